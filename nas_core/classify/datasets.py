"""Image-classification datasets from LOCAL files only (nothing downloads), held in memory as uint8 tensors.

Readers: CIFAR-10/100 (python pickle batches), MNIST / FashionMNIST / KMNIST / EMNIST-balanced (IDX, gz or
not) and scikit-learn's bundled 8x8 digits (the default, so ``nas-search`` runs anywhere). Normalisation and
augmentation follow the authors' reference code (ARCHITECTURE §3): random crop 32 pad 4, h-flip for CIFAR and
FashionMNIST only, cutout 16 after normalisation. Grayscale 28x28 sets train on 32x32 crops of the 4-padded
image and test at 28x28, as the reference does (the FCN ends in global average pooling, so both sizes work).

Augmentation runs on whole batches of tensors (on the training device) instead of per-image PIL transforms:
the data fit in memory, and this keeps small CPU trials fast and GPU trials free of loader stalls.
"""

from __future__ import annotations

import gzip
import logging
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from nas_core.errors import NasError
from nas_core.registry import Registry
from nas_core.safe_pickle import safe_load

log = logging.getLogger(__name__)

DATASETS = Registry("dataset")

_IDX_IMAGES_MAGIC = 2051  # 0x00000803: uint8, 3 dims
_IDX_LABELS_MAGIC = 2049  # 0x00000801: uint8, 1 dim


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation of the reference (ARCHITECTURE §3); applied per batch."""

    crop: int | None = 32  # output side of the random crop (None: no crop)
    pad: int = 4
    flip: bool = False
    cutout: int = 16  # side of the zeroed square, 0 disables it


@dataclass
class RawDataset:
    """What a reader returns: uint8 images N×C×H×W and int64 labels, official train/test split."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment
    notes: list[str] = field(default_factory=list)


@dataclass
class ClassificationData:
    """Train / validation / test splits in memory, with the normalisation and augmentation of the set."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment
    notes: list[str] = field(default_factory=list)
    _stats: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in ("train", "val", "test"):
            raise NasError(f"{name}: unknown split; expected train, val or test")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [0, 1]) N×C×H×W → float32 normalised with the set's mean and std."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if x.device not in self._stats:  # one copy per device, not one per batch
            self._stats[x.device] = (torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1),
                                     torch.tensor(self.std, device=x.device).view(1, -1, 1, 1))
        mean, std = self._stats[x.device]
        return (x - mean) / std

    def draw_augment(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu"
                     ) -> dict[str, torch.Tensor]:
        """Random draws of a whole epoch's augmentation (crop offsets, flips, cutout centres), one row each.

        Drawn on the CPU from the trial's generator, so they depend only on its seed whatever the device,
        and moved once per epoch: no host-device copy (and sync) per batch.
        """
        aug, (h, w) = self.augment, self.train_images.shape[2:]
        draws: dict[str, torch.Tensor] = {}
        if aug.crop is not None:
            draws["oy"] = torch.randint(0, h + 2 * aug.pad - aug.crop + 1, (n,), generator=generator)
            draws["ox"] = torch.randint(0, w + 2 * aug.pad - aug.crop + 1, (n,), generator=generator)
            h = w = aug.crop
        if aug.flip:
            draws["flip"] = torch.rand(n, generator=generator) < 0.5
        if aug.cutout > 0:
            draws["cy"] = torch.randint(0, h, (n,), generator=generator)
            draws["cx"] = torch.randint(0, w, (n,), generator=generator)
        return {k: v.to(device) for k, v in draws.items()}

    def augment_batch(self, images: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """uint8 batch → augmented, normalised float batch (crop pad → flip → normalise → cutout).

        ``draws`` holds this batch's rows of ``draw_augment``.
        """
        return _augment(images, self, draws)


def _augment(images: torch.Tensor, data: ClassificationData, draws: dict[str, torch.Tensor]) -> torch.Tensor:
    aug = data.augment
    n = images.shape[0]
    dev = images.device
    x = images.float() / 255.0
    if aug.crop is not None:
        # Zero padding of the raw image, as torchvision RandomCrop(padding=4) does before Normalize.
        x = torch.nn.functional.pad(x, (aug.pad, aug.pad, aug.pad, aug.pad))
        ar = torch.arange(aug.crop, device=dev)
        rows = (draws["oy"][:, None] + ar)[:, None, :, None]
        cols = (draws["ox"][:, None] + ar)[:, None, None, :]
        batch = torch.arange(n, device=dev)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=dev)[None, :, None, None]
        x = x[batch, chans, rows, cols]
    if aug.flip:
        x = torch.where(draws["flip"][:, None, None, None], x.flip(3), x)
    x = data.normalize(x)
    if aug.cutout > 0:
        # Reference Cutout: centre anywhere in the image, square clipped at the border, zeroed after
        # normalisation.
        half = aug.cutout // 2
        ys = torch.arange(x.shape[2], device=dev)[None, :]
        xs = torch.arange(x.shape[3], device=dev)[None, :]
        cy, cx = draws["cy"][:, None], draws["cx"][:, None]
        hole = ((ys >= cy - half) & (ys < cy + half))[:, :, None] & ((xs >= cx - half) & (xs < cx + half))[:, None, :]
        x = x.masked_fill(hole[:, None], 0.0)
    return x


# ----------------------------------------------------------------------------------------------- readers


def _open_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise NasError(f"{path}: expected a complete gzip file ({exc})") from None
    return raw


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzipped or not, checking magic and size."""
    path = Path(path)
    if not path.is_file():
        raise NasError(f"{path}: expected an IDX file; file not found")
    data = _open_bytes(path)
    if len(data) < 8:
        raise NasError(f"{path}: expected an IDX header, got {len(data)} bytes")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise NasError(f"{path}: expected IDX magic {expected_magic}, got {magic}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", data[4:header])
    count = int(np.prod(dims))
    if len(data) - header != count:
        raise NasError(f"{path}: expected {count} data bytes for shape {dims}, got {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find(root: Path, names: list[str]) -> Path | None:
    """First existing file among names (plain or .gz) in root, root/raw, root/<Set>/raw (torchvision)."""
    folders = [root, root / "raw", *sorted(p / "raw" for p in root.glob("*") if (p / "raw").is_dir())]
    for folder in folders:
        for name in names:
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
    return None


def _load_idx_pair(root: Path, images: str, labels: str) -> tuple[np.ndarray, np.ndarray] | None:
    img_path = _find(root, [images])
    lbl_path = _find(root, [labels])
    if img_path is None and lbl_path is None:
        return None
    if img_path is None or lbl_path is None:
        missing = images if img_path is None else labels
        raise NasError(f"{root / missing}: expected an IDX file (plain or .gz) beside its pair; file not found")
    x = read_idx(img_path, _IDX_IMAGES_MAGIC)
    y = read_idx(lbl_path, _IDX_LABELS_MAGIC)
    if len(x) != len(y):
        raise NasError(f"{lbl_path}: expected {len(x)} labels to match {img_path.name}, got {len(y)}")
    return x, y


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out), held_out ≈ fraction of each class; seeded."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    try:
        keep, held = train_test_split(index, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError as exc:  # too few images per class for a stratified split of this size
        raise NasError(f"split of {len(labels)} images: expected at least one held-out image per class "
                       f"and two images per class ({exc})") from None
    return np.sort(keep), np.sort(held)


def _idx_dataset(root: str | Path | None, prefix: str, what: str, mean: float, std: float,
                 augment: Augment, num_classes: int) -> RawDataset:
    if root is None:
        raise NasError(f"{what}: expected --data-root DIR holding the IDX files (nothing is downloaded)")
    root = Path(root)
    if not root.is_dir():
        raise NasError(f"{root}: expected a folder holding the {what} IDX files; folder not found")
    stem = "test" if prefix else "t10k"  # EMNIST names its test files "test", the others "t10k"
    test = _load_idx_pair(root, f"{prefix}{stem}-images-idx3-ubyte", f"{prefix}{stem}-labels-idx1-ubyte")
    train = _load_idx_pair(root, f"{prefix}train-images-idx3-ubyte", f"{prefix}train-labels-idx1-ubyte")
    if test is None:
        raise NasError(f"{root / (prefix + stem + '-images-idx3-ubyte')}: expected {what} test IDX files "
                       "(plain or .gz); file not found")
    notes = []
    if train is None:
        # Only the test set on disk (e.g. the shared MNIST t10k): split it 80/20, stratified and seeded.
        x, y = test
        keep, held = _stratified_split(y, 0.2, seed=0)
        train, test = (x[keep], y[keep]), (x[held], y[held])
        notes.append(f"{what}: only the {stem} files were found in {root}; split them into "
                     f"{len(keep)} train / {len(held)} test images (stratified, seed 0)")
    return RawDataset(
        torch.from_numpy(train[0].copy()).unsqueeze(1), torch.from_numpy(train[1].astype(np.int64)),
        torch.from_numpy(test[0].copy()).unsqueeze(1), torch.from_numpy(test[1].astype(np.int64)),
        num_classes, (mean,), (std,), augment, notes,
    )


_GRAY_AUGMENT = Augment(crop=32, pad=4, flip=False, cutout=16)


# Normalisation constants are the reference's (utils.data_transforms); MNIST, absent there, uses the usual ones.
@DATASETS.register("mnist")
def mnist(root=None) -> RawDataset:
    return _idx_dataset(root, "", "mnist", 0.1307, 0.3081, _GRAY_AUGMENT, 10)


@DATASETS.register("fashionmnist")
def fashionmnist(root=None) -> RawDataset:
    return _idx_dataset(root, "", "fashionmnist", 0.2860402, 0.3530236, replace(_GRAY_AUGMENT, flip=True), 10)


@DATASETS.register("kmnist")
def kmnist(root=None) -> RawDataset:
    return _idx_dataset(root, "", "kmnist", 0.19036119, 0.34719803, _GRAY_AUGMENT, 10)


@DATASETS.register("emnist")
def emnist(root=None) -> RawDataset:
    """EMNIST-balanced (47 classes), images as stored in the IDX files (as torchvision reads them)."""
    return _idx_dataset(root, "emnist-balanced-", "emnist", 0.1751, 0.3332, _GRAY_AUGMENT, 47)


def _unpickle(path: Path) -> dict:
    # Restricted unpickler: a batch may hold only containers, bytes and numpy arrays, never code.
    batch = safe_load(path, "a CIFAR python pickle batch", encoding="bytes")
    if not isinstance(batch, dict) or b"data" not in batch:
        raise NasError(f"{path}: expected a pickled dict with b'data' and labels")
    return batch


def _cifar_arrays(paths: list[Path], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for path in paths:
        batch = _unpickle(path)
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if label_key not in batch or data.ndim != 2 or data.shape[1] != 3072:
            raise NasError(f"{path}: expected b'data' of shape (N, 3072) and {label_key!r}")
        y = np.asarray(batch[label_key], dtype=np.int64)
        if len(y) != len(data):
            raise NasError(f"{path}: expected {len(data)} labels, got {len(y)}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def _cifar_folder(root, folder: str, what: str) -> Path:
    if root is None:
        raise NasError(f"{what}: expected --data-root DIR holding {folder}/ (nothing is downloaded)")
    root = Path(root)
    for candidate in (root / folder, root):
        if candidate.is_dir() and candidate.name == folder:
            return candidate
    raise NasError(f"{root / folder}: expected the {what} python batches folder; folder not found")


_CIFAR_AUGMENT = Augment(crop=32, pad=4, flip=True, cutout=16)


@DATASETS.register("cifar10")
def cifar10(root=None) -> RawDataset:
    folder = _cifar_folder(root, "cifar-10-batches-py", "cifar10")
    x, y = _cifar_arrays([folder / f"data_batch_{i}" for i in range(1, 6)], b"labels")
    tx, ty = _cifar_arrays([folder / "test_batch"], b"labels")
    return RawDataset(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(tx), torch.from_numpy(ty), 10,
                      (0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768), _CIFAR_AUGMENT)


@DATASETS.register("cifar100")
def cifar100(root=None) -> RawDataset:
    folder = _cifar_folder(root, "cifar-100-python", "cifar100")
    x, y = _cifar_arrays([folder / "train"], b"fine_labels")
    tx, ty = _cifar_arrays([folder / "test"], b"fine_labels")
    return RawDataset(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(tx), torch.from_numpy(ty), 100,
                      (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), _CIFAR_AUGMENT)


@DATASETS.register("digits")
def digits(root=None) -> RawDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0..16): the default that runs anywhere.

    No official split: 80/20 stratified (seed 0). Augmentation scaled to the size: crop 8 pad 1, no flip,
    no cutout (a 16-pixel hole would erase the whole image).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    keep, held = _stratified_split(labels, 0.2, seed=0)
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels)
    return RawDataset(x[keep], y[keep], x[held], y[held], 10, (0.3053,), (0.3759,),
                      Augment(crop=8, pad=1, flip=False, cutout=0))


def load_dataset(name: str, root: str | Path | None = None, *, val_fraction: float = 0.1,
                 rank_on: str = "val", split_seed: int = 0) -> ClassificationData:
    """Read a dataset and hold out a stratified, seeded validation split of its training set.

    ``rank_on="test"`` reproduces the paper (ARCHITECTURE §3): no validation split, the search ranks on test.
    """
    if rank_on not in ("val", "test"):
        raise NasError(f"rank_on: expected 'val' or 'test', got {rank_on!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise NasError(f"val_fraction: expected a fraction in [0, 1), got {val_fraction}")
    raw: RawDataset = DATASETS.create(name, root=root)
    for note in raw.notes:
        log.info(note)
    x, y = raw.train_images, raw.train_labels
    if rank_on == "test" or val_fraction == 0.0:
        keep, held = np.arange(len(y)), np.array([], dtype=np.int64)
    else:
        keep, held = _stratified_split(y.numpy(), val_fraction, seed=split_seed)
    keep_t, held_t = torch.from_numpy(keep), torch.from_numpy(held)
    return ClassificationData(
        name, x[keep_t].contiguous(), y[keep_t].contiguous(), x[held_t].contiguous(), y[held_t].contiguous(),
        raw.test_images.contiguous(), raw.test_labels.contiguous(), raw.num_classes, raw.mean, raw.std,
        raw.augment, list(raw.notes),
    )


def list_datasets(pattern: str = "*") -> list[str]:
    return DATASETS.list(pattern)
