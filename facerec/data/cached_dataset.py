"""Training batches from the decoded cache (ARCHITECTURE §8): rows gathered as uint8, moved to the training
device, augmented there in batch (facerec.data.batch_augment) and normalised (eval_protocols.embed.normalize).

The trainer (facerec.train.loop) asks a dataset with ``device_batches`` for its batches instead of building a
DataLoader. On a CPU whole batches are made ahead on a thread per core (up to 4), each augmented image by image
(facerec.data.batch_augment.apply_per_image); on a GPU the next rows are read on a thread while the step runs. The batch order is the trainer's (a function of seed and epoch); a batch's augmentation is drawn
from a generator seeded by (seed, epoch, rank, step), so a resumed epoch augments as the uninterrupted one.

``on_device`` (--cache-on-device) holds the uint8 images in the device's memory (RAM on a CPU) when they
take at most half of what is free there, else batches are read from the memory-mapped file after one warning.
Under torchrun each rank then holds only its share: a fixed partition of the images, shuffled per epoch.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm import tqdm

from eval_protocols.embed import normalize
from facerec.data.cache import DecodedCache
from facerec.data.datasets import FacePack

_SHARE_SEED = 0x5EED  # the partition of images between ranks stays the same for every trial of a search
_UPLOAD_ROWS = 4096  # rows copied to the device at a time when holding the cache there


class CachedFaceDataset(torch.utils.data.Dataset):
    """The training images of ``identities`` (labels = their positions) read from a decoded cache. Items are
    (uint8 CHW, label) as FaceDataset(normalize=False) gives them, un-augmented; training goes through
    ``device_batches``. ``transform``: a facerec.data.batch_augment.BatchAdaFaceAugment or None."""

    def __init__(self, cache: DecodedCache, pack: FacePack, identities=None, transform=None, on_device: bool = False):
        self.identities = list(range(pack.num_identities)) if identities is None else list(identities)
        rows, labels = [], []
        for new_label, identity in enumerate(self.identities):
            keys = pack.identity_keys(int(identity))
            rows.append(cache.rows(keys))
            labels.append(np.full(len(keys), new_label, dtype=np.int64))
        self.rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        self.labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        self.keys = cache.keys[self.rows]
        self.num_classes = len(self.identities)
        self.cache, self.transform, self.on_device = cache, transform, on_device
        self._held: dict = {}  # shared with the trainer's shallow copies: the images held on a device

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        image = np.array(self.cache.images[self.rows[i]])
        return torch.from_numpy(image).permute(2, 0, 1), int(self.labels[i])

    # --- which images a rank reads ------------------------------------------------------------------
    def _share(self, rank: int, world: int) -> np.ndarray:
        per_rank = len(self) // world
        return np.sort(np.random.default_rng(_SHARE_SEED).permutation(len(self))[rank::world][:per_rank])

    def epoch_indices(self, seed: int, epoch: int, rank: int, world: int) -> list[int] | None:
        """This rank's order for ``epoch`` when it holds a share on its device under torchrun; else None
        (the trainer's DistributedSampler order)."""
        if world == 1 or not self.on_device:
            return None
        share = self._share(rank, world)
        return share[np.random.default_rng([seed % 2**63, epoch]).permutation(len(share))].tolist()

    # --- holding the images on the device -----------------------------------------------------------
    def hold_on_device(self, device: torch.device, rank: int = 0, world: int = 1) -> None:
        """With ``on_device``: copy the images this rank reads to ``device`` once (kept across trainings)."""
        if not self.on_device:
            return
        where = (str(device), rank, world)
        if self._held.get("where") == where:
            return
        self._held.clear()
        positions = np.arange(len(self)) if world == 1 else self._share(rank, world)
        need = len(positions) * int(np.prod(self.cache.images.shape[1:]))
        free = _free_bytes(device)
        if need > free // 2:
            logging.getLogger("facerec").warning(
                f"--cache-on-device: the decoded images take {need / 1e9:.1f} GB, more than half of the "
                f"{free / 1e9:.1f} GB free on {device}; reading batches from {self.cache.folder} instead")
            self._held.update(where=where, images=None)
            return
        images = torch.empty((len(positions), *self.cache.images.shape[1:]), dtype=torch.uint8, device=device)
        for lo in tqdm(range(0, len(positions), _UPLOAD_ROWS), desc=f"cache -> {device}", unit="chunk",
                       file=sys.stderr, disable=None):
            rows = self.rows[positions[lo:lo + _UPLOAD_ROWS]]
            images[lo:lo + len(rows)] = torch.from_numpy(self.cache.images[rows]).to(device)
        lookup = np.full(len(self), -1, dtype=np.int64)
        lookup[positions] = np.arange(len(positions))
        self._held.update(where=where, images=images, lookup=lookup)

    # --- batches ------------------------------------------------------------------------------------
    def _host_rows(self, indices: np.ndarray, pin: bool) -> torch.Tensor:
        """uint8 [B, H, W, 3] read from the memmap (pinned for a fast copy to a GPU)."""
        out = torch.empty((len(indices), *self.cache.images.shape[1:]), dtype=torch.uint8, pin_memory=pin)
        np.take(self.cache.images, self.rows[indices], axis=0, out=out.numpy())
        return out

    def _batches(self, indices: np.ndarray, batch: int, device: torch.device) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """(indices, uint8 [B, H, W, 3] on ``device``) per whole batch; from the memmap, the next batch is read
        on a thread while the current one trains."""
        chunks = [indices[lo:lo + batch] for lo in range(0, len(indices) - batch + 1, batch)]
        if self._held.get("images") is not None and self._held["where"][0] == str(device):
            for chosen in chunks:
                yield chosen, self._rows_on(chosen, device)
            return
        pin = device.type == "cuda"
        with ThreadPoolExecutor(1) as reader:
            pending = reader.submit(self._host_rows, chunks[0], pin) if chunks else None
            for i, chosen in enumerate(chunks):
                rows = pending.result()
                pending = reader.submit(self._host_rows, chunks[i + 1], pin) if i + 1 < len(chunks) else None
                yield chosen, rows.to(device, non_blocking=pin)

    def device_batches(self, indices, batch: int, device: torch.device, entropy: tuple[int, ...],
                       first_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(float32 NCHW normalised images, int64 labels) on ``device``, ``batch`` at a time over ``indices``
        (whole batches only); step j's augmentation is drawn from (``entropy``, first_step + j)."""
        indices = np.asarray(indices, dtype=np.int64)
        if device.type == "cpu":
            yield from self._cpu_batches(indices, batch, entropy, first_step)
            return
        for j, (chosen, rows) in enumerate(self._batches(indices, batch, device)):
            yield self._finish(rows, chosen, _seed(*entropy, first_step + j), device)

    def _finish(self, rows: torch.Tensor, chosen: np.ndarray, seed: int, device: torch.device):
        """uint8 NHWC rows on ``device`` → (augmented, normalised NCHW float32 images, labels)."""
        # An NCHW view of the NHWC rows; normalize returns it NCHW contiguous, as the DataLoader path gives it
        # (oneDNN's CPU backward crashed on the permuted NHWC strides of a 4-channel net).
        images = rows.permute(0, 3, 1, 2)
        if self.transform is not None:
            images = self.transform(images, torch.Generator(device=device).manual_seed(seed))
        if device.type == "cpu":  # NumPy's normalize: the same values, single-threaded (no OpenMP team per thread)
            return torch.from_numpy(normalize(images.numpy())), torch.from_numpy(self.labels[chosen])
        return normalize(images), torch.from_numpy(self.labels[chosen]).to(device)

    def _cpu_batches(self, indices: np.ndarray, batch: int, entropy: tuple[int, ...],
                     first_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """On a CPU, whole batches (read, augmented, normalised) are made ahead on a pool of threads, one per
        core: the batch a step trains on is the same as made one at a time (its draws depend only on its step)."""
        cpu = torch.device("cpu")
        chunks = [indices[lo:lo + batch] for lo in range(0, len(indices) - batch + 1, batch)]

        def make(j: int):
            return self._finish(self._rows_on(chunks[j], cpu), chunks[j], _seed(*entropy, first_step + j), cpu)

        ahead = max(1, min(os.cpu_count() or 1, 4))
        with ThreadPoolExecutor(ahead) as pool:
            pending = deque(pool.submit(make, j) for j in range(min(ahead, len(chunks))))
            for j in range(len(chunks)):
                done = pending.popleft().result()
                if j + ahead < len(chunks):
                    pending.append(pool.submit(make, j + ahead))
                yield done

    def _rows_on(self, chosen: np.ndarray, device: torch.device) -> torch.Tensor:
        """uint8 NHWC rows of ``chosen``: from the copy held on ``device`` (--cache-on-device), else the memmap."""
        held = self._held.get("images")
        if held is not None and self._held["where"][0] == str(device):
            return held[torch.from_numpy(self._held["lookup"][chosen]).to(device)]
        return self._host_rows(chosen, pin=False)


def _seed(*entropy: int) -> int:
    return int(np.random.SeedSequence([e % 2**63 for e in entropy]).generate_state(1, np.uint64)[0] >> 1)


def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0
