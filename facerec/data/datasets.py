"""Face packs as users have them (InsightFace ``train.rec/.idx/property``), a torch Dataset over them,
identity splits and verification pairs for the search's fitness (ARCHITECTURE §4, §5, §6)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from eval_protocols.bins import decode_image
from eval_protocols.embed import normalize
from facerec.data.images import read_image_folder  # noqa: F401  (re-exported)
from facerec.data.recordio import RecordReader, unpack_header
from facerec.errors import FaceRecError


class FacePack:
    """An InsightFace face set (header record 0 with flag 2) or a plain pack (every key an image).

    ``root`` is the folder holding ``train.rec`` (+ ``train.idx``, ``property``) or a ``.rec`` file.
    Identities are numbered 0..num_identities-1: the order of the identity records, or for a plain
    pack the sorted distinct labels. Opening reads record 0, the identity records and the last record
    (so a truncated file is caught here), never the images.
    """

    def __init__(self, root: str | Path):
        root = Path(root)
        rec = root if root.suffix == ".rec" else root / "train.rec"
        if not root.exists():
            raise FaceRecError(f"{root}: expected a face pack folder holding train.rec, not found")
        if not rec.is_file():
            raise FaceRecError(f"{rec}: expected a RecordIO .rec file, not found")
        idx = rec.with_suffix(".idx")
        self.root = root
        self.reader = RecordReader(rec, idx if idx.is_file() else None)
        index = self.reader.index
        if not index and self.reader.idx_path is not None:
            raise FaceRecError(f"{idx}: expected 'key<TAB>offset' lines, the index is empty")
        if not index:
            raise FaceRecError(f"{rec}: expected at least one record, the file is empty")
        last = max(index, key=index.__getitem__)
        self.reader.read_at(index[last], last)  # framing of the last record: catches truncation now
        header = self.header(min(index) if 0 not in index else 0)
        self.is_face_set = 0 in index and header.flag >= 2
        if self.is_face_set:
            self._read_identity_records(header)
        else:
            self._read_plain_labels()
        self.image_size = self._image_size()

    # --- layout ------------------------------------------------------------------------------
    def _read_identity_records(self, header) -> None:
        where = f"{self.reader.rec_path}: header record 0"
        first, end = _key_label(header.label[0], where), _key_label(header.label[1], where)
        if not 1 < first < end:
            raise FaceRecError(f"{where}: expected labels (a, b) with 1 < a < b (images 1..a-1, identities "
                               f"a..b-1), got ({first}, {end})")
        self._starts: list[int] = []
        self._ends: list[int] = []
        for key in range(first, end):
            ident = self.header(key)
            at = self.where(key)
            if ident.flag < 2:
                raise FaceRecError(f"{at}: expected an identity record (flag 2, labels [start, end)), found "
                                   f"flag {ident.flag}")
            start, stop = (_key_label(v, at) for v in ident.label[:2])
            if not (1 <= start < stop <= first) or (self._ends and start < self._ends[-1]):
                raise FaceRecError(f"{at}: expected an image-key range inside [1, {first}) after the previous "
                                   f"one, got [{start}, {stop})")
            self._starts.append(start)
            self._ends.append(stop)
        self.num_identities = len(self._starts)
        self.num_images = first - 1

    def _read_plain_labels(self) -> None:
        keys = sorted(self.reader.index)
        raw = np.array([_first_label(self.header(k)) for k in keys])
        names, labels = np.unique(raw, return_inverse=True)
        self._plain_keys = np.array(keys)
        self._plain_labels = labels
        self._plain_label_of = dict(zip(keys, labels.tolist()))
        self.num_identities = len(names)
        self.num_images = len(keys)

    def _image_size(self) -> tuple[int, int]:
        prop = self.root / "property" if self.root.is_dir() else self.root.with_name("property")
        self.image_size_source = str(prop) if prop.is_file() else "its first image"
        if prop.is_file():
            try:
                text = prop.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not text"
                raise FaceRecError(f"{prop}: expected 'num_classes,height,width' ({reason})") from None
            try:
                classes, height, width = (int(v) for v in text.strip().split(","))
            except ValueError:
                raise FaceRecError(f"{prop}: expected 'num_classes,height,width', got {text[:40]!r}") from None
            if min(classes, height, width) < 1:
                raise FaceRecError(f"{prop}: expected positive 'num_classes,height,width', got {text.strip()[:40]!r}")
            if self.is_face_set and classes != self.num_identities:
                raise FaceRecError(f"{prop}: expected num_classes {self.num_identities} (identity records "
                                   f"in train.rec), got {classes}")
            return height, width
        first_key = self._starts[0] if self.is_face_set else int(self._plain_keys[0])
        return self.image(first_key).shape[:2]

    # --- access ------------------------------------------------------------------------------
    def where(self, key: int) -> str:
        """``<rec>: key K``, saying when its offset came from the ``.idx`` (a bad record may be a bad line there)."""
        note = f" (offset from {self.reader.idx_path.name})" if self.reader.idx_path is not None else ""
        return f"{self.reader.rec_path}: key {key}{note}"

    def header(self, key: int):
        return unpack_header(self.reader.read(key), self.where(key))[0]

    def identity_keys(self, identity: int) -> list[int]:
        if not 0 <= identity < self.num_identities:
            raise FaceRecError(f"{self.root}: expected an identity in 0..{self.num_identities - 1}, got {identity}")
        if self.is_face_set:
            return list(range(self._starts[identity], self._ends[identity]))
        return self._plain_keys[self._plain_labels == identity].tolist()

    def image_keys(self) -> list[int]:
        if self.is_face_set:
            return [k for s, e in zip(self._starts, self._ends) for k in range(s, e)]
        return self._plain_keys.tolist()

    def label(self, key: int) -> int:
        if not self.is_face_set:
            return self._plain_label_of[key]
        identity = bisect.bisect_right(self._starts, key) - 1
        if identity < 0 or key >= self._ends[identity]:
            raise FaceRecError(f"{self.reader.rec_path}: key {key}: expected an image key, not in any identity")
        return identity

    def image_bytes(self, key: int) -> bytes:
        return self.reader.image_bytes_at(self.reader.offset(key), self.where(key), key)

    def image(self, key: int) -> np.ndarray:
        """RGB uint8 HxWx3."""
        return decode_image(self.image_bytes(key), None, source=self.where(key))

    def names(self) -> list[str]:
        """Identity names from ``identities.txt`` when ``facerec-data pack`` wrote one, else the numbers."""
        path = self.root / "identities.txt" if self.root.is_dir() else self.root.with_name("identities.txt")
        if path.is_file():
            names = [line.split("\t", 1)[1] for line in path.read_text().splitlines() if "\t" in line]
            if len(names) == self.num_identities:
                return names
        return [str(i) for i in range(self.num_identities)]


def _key_label(value: float, where: str) -> int:
    # Key ranges are stored as float32 labels (MXNet's IRHeader); a corrupt one may be NaN or infinite.
    if not math.isfinite(value):
        raise FaceRecError(f"{where}: expected record keys as labels, got {value}")
    return int(value)


def _first_label(header) -> float:
    # Image records of some packs carry [label, ...] arrays (flag > 0); the identity is the first.
    return float(header.label[0]) if header.flag > 0 else float(header.label)


def normalize_image(rgb: np.ndarray) -> torch.Tensor:
    """RGB uint8 HxWx3 -> float32 CHW model input (``eval_protocols.embed.normalize``)."""
    return normalize(torch.from_numpy(rgb).permute(2, 0, 1))


class FaceDataset(torch.utils.data.Dataset):
    """(image, label) over a FacePack: image float32 CHW RGB normalised per ARCHITECTURE §6 (or uint8 CHW when
    ``normalize=False``, to normalise on the GPU); label = position of the identity in ``identities``.

    ``transform`` runs on the decoded RGB uint8 HxWx3 array (e.g. AdaFaceAugment) before normalising.
    The pack's file is memory-mapped lazily in each process, so the dataset is safe with workers.
    """

    def __init__(self, root_or_pack: str | Path | FacePack, identities: Sequence[int] | None = None,
                 transform=None, normalize: bool = True):
        self.pack = root_or_pack if isinstance(root_or_pack, FacePack) else FacePack(root_or_pack)
        self.identities = list(range(self.pack.num_identities)) if identities is None else list(identities)
        keys, labels = [], []
        for new_label, identity in enumerate(self.identities):
            ids = self.pack.identity_keys(int(identity))
            keys += ids
            labels += [new_label] * len(ids)
        self.keys = np.asarray(keys, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = len(self.identities)
        self.transform = transform
        self.normalize = normalize
        self._reader = self.pack.reader
        index = self._reader.index
        self._offsets = [index[k] for k in keys]  # python ints: the hot path does no numpy/dict work
        self._labels = labels
        self._where = str(self._reader.rec_path)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int):
        data = self._reader.image_bytes_at(self._offsets[i], self._where)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
        if image is None:
            raise FaceRecError(f"{self._where}: key {self.keys[i]}: expected a decodable JPEG image")
        if self.transform is not None:
            image = self.transform(image)
        tensor = normalize_image(image) if self.normalize else torch.from_numpy(image).permute(2, 0, 1)
        return tensor, self._labels[i]


def split_identities(num_identities: int, holdout: int | float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of identities into (train, held-out), both sorted. ``holdout``: a count, or a fraction
    in (0, 1). Held-out identities give the verification pairs that rank trials (ARCHITECTURE §4)."""
    count = round(holdout * num_identities) if isinstance(holdout, float) and holdout < 1 else int(holdout)
    if not 0 < count < num_identities:
        raise FaceRecError(f"holdout: expected between 1 and {num_identities - 1} identities, got {holdout}")
    order = np.random.default_rng(seed).permutation(num_identities)
    return sorted(order[count:].tolist()), sorted(order[:count].tolist())


PAIR_SAMPLING = ("images", "people")


def sample_pairs(groups: Sequence[Sequence], num_pairs: int, seed: int,
                 by: str = "images") -> tuple[list[tuple], np.ndarray]:
    """Distinct (a, b) pairs of items from ``groups`` (one group per identity): num_pairs // 2 same-identity
    pairs and the rest different, alternating same/different so every contiguous 10-fold split is balanced.

    ``by="images"`` draws uniformly over all distinct pairs, so a person with n images weighs ~n² among the
    same pairs (a few people with hundreds of photos, as in Pins, then make most of them). ``by="people"``
    draws a same pair by first drawing a person uniformly among those with ≥ 2 images, and a different pair
    by first drawing two people uniformly: every person counts alike, as in LFW's pair lists."""
    if by not in PAIR_SAMPLING:
        raise FaceRecError(f"pair sampling {by!r}: expected one of {', '.join(PAIR_SAMPLING)}")
    rng = np.random.default_rng(seed)
    num_pos = num_pairs // 2
    num_neg = num_pairs - num_pos
    sizes = np.array([len(g) for g in groups])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    identity_of = np.repeat(np.arange(len(groups)), sizes)
    total_pos = int((sizes * (sizes - 1) // 2).sum())
    total_neg = int((sizes.sum() ** 2 - (sizes ** 2).sum()) // 2)
    if num_pairs < 2 or num_pos > total_pos or num_neg > total_neg:
        raise FaceRecError(f"pairs: expected {num_pos} same and {num_neg} different distinct pairs (at least 2), "
                           f"the identities hold {total_pos} same and {total_neg} different")
    people = by == "people"
    weights = ((sizes > 1) / max(1, int((sizes > 1).sum()))) if people else sizes * (sizes - 1) / max(1, total_pos * 2)
    # With by="people" a listed pair weighs 1 / (its person's same pairs), or 1 / (n_a · n_b) if different.
    same_weight = (lambda p: 1.0 / (sizes * (sizes - 1) / 2)[identity_of[p[:, 0]]]) if people else None
    diff_weight = (lambda p: 1.0 / (sizes[identity_of[p[:, 0]]] * sizes[identity_of[p[:, 1]]])) if people else None
    pos = _choose(rng, num_pos, total_pos, lambda: _all_same_pairs(offsets),
                  lambda: _same_pair(rng, sizes, offsets, weights), same_weight)
    neg = _choose(rng, num_neg, total_neg, lambda: _all_different_pairs(identity_of),
                  (lambda: _different_person_pair(rng, offsets, sizes)) if people
                  else (lambda: _different_pair(rng, identity_of)), diff_weight)
    flat = [item for g in groups for item in g]
    pairs, issame = [], []
    for i in range(num_neg):
        for chosen, same in ((pos, True), (neg, False)):
            if i < len(chosen):
                a, b = chosen[i] if rng.random() < 0.5 else chosen[i][::-1]
                pairs.append((flat[a], flat[b]))
                issame.append(same)
    return pairs, np.array(issame, dtype=bool)


def _same_pair(rng, sizes, offsets, weights):
    identity = rng.choice(len(sizes), p=weights)
    a, b = rng.choice(sizes[identity], size=2, replace=False)
    return offsets[identity] + a, offsets[identity] + b


def _different_pair(rng, identity_of):
    while True:
        a, b = rng.integers(len(identity_of), size=2)
        if identity_of[a] != identity_of[b]:
            return a, b


def _different_person_pair(rng, offsets, sizes):
    a, b = rng.choice(len(sizes), size=2, replace=False)
    return offsets[a] + rng.integers(sizes[a]), offsets[b] + rng.integers(sizes[b])


def _all_same_pairs(offsets) -> np.ndarray:
    return np.concatenate([np.stack(np.triu_indices(end - start, 1), 1) + start
                           for start, end in zip(offsets[:-1], offsets[1:])])


def _all_different_pairs(identity_of) -> np.ndarray:
    a, b = np.triu_indices(len(identity_of), 1)
    keep = identity_of[a] != identity_of[b]
    return np.stack([a[keep], b[keep]], 1)


_ENUMERATE_UP_TO = 200_000  # below this many candidate pairs, list them all and draw without replacement


def _choose(rng, count: int, total: int, every, draw, weight=None) -> list[tuple[int, int]]:
    """``count`` distinct pairs out of ``total``: drawn from the full list (each listed pair with probability
    ∝ ``weight(pairs)``, default uniform) when it is small or when most of it is wanted (rejection sampling
    would stall collecting the last few), else by rejection."""
    if total <= _ENUMERATE_UP_TO or 2 * count > total:
        candidates = every()
        p = None
        if weight is not None:
            w = weight(candidates)
            p = w / w.sum()
        return [tuple(map(int, c)) for c in candidates[rng.choice(len(candidates), count, replace=False, p=p)]]
    seen: dict[tuple[int, int], None] = {}
    while len(seen) < count:
        a, b = draw()
        seen.setdefault((int(min(a, b)), int(max(a, b))), None)
    return list(seen)


def verification_pairs(pack: FacePack, identities: Sequence[int], num_pairs: int,
                       seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [2P, H, W, 3] RGB with pair i at 2i, 2i+1; issame bool [P]), half of them positive,
    drawn from ``identities`` of ``pack``."""
    groups = [pack.identity_keys(int(i)) for i in identities]
    pairs, issame = sample_pairs(groups, num_pairs, seed)
    images = np.stack([pack.image(key) for pair in pairs for key in pair])
    return images, issame
