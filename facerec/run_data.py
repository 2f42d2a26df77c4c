"""The data of a training or search run: which identities train, which verify (ARCHITECTURE §4).

`--data DIR` is a RecordIO face pack (train.rec/.idx/property), possibly with `.bin` packs beside it;
no --data means the built-in synthetic demo set (facerec.demo), cached under the output folder.
`--subset-ids N` keeps N identities (seeded); `--holdout-ids N` holds N of them out of training and
builds verification pairs from them; `--val-bins a,b` verifies on those `.bin` packs instead.
Training images come from the pack's decoded cache when it has one (`facerec-data cache DATA`; `--no-cache`
decodes the JPEGs instead), ARCHITECTURE §8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facerec.errors import FaceRecError
from facerec.validation import VerificationSet, find_bins, holdout_set, load_bin_sets

HOLDOUT_FRACTION = 0.10


@dataclass
class RunData:
    train_set: object  # facerec.data.datasets.FaceDataset or facerec.data.cached_dataset.CachedFaceDataset
    val_sets: list[VerificationSet]
    num_classes: int
    source: str  # the data folder, or "demo"
    info: dict = field(default_factory=dict)  # identities used / held out, pairs: written into settings


def parse_names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    return names or None


def check_pack_dir(data_dir: str | Path) -> None:
    """Fail on a bad --data before a command makes its output folder (nothing written half-way)."""
    from facerec.data.datasets import FacePack

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FaceRecError(f"{data_dir}: expected a face data folder (train.rec, train.idx, property)")
    if not (data_dir / "train.rec").is_file():
        raise FaceRecError(f"{data_dir}: expected train.rec (a RecordIO face pack; build one with facerec-data pack)")
    FacePack(data_dir)  # header record and index: cheap, and names the bad file


def add_cache_flags(parser) -> None:
    """--no-cache / --cache-on-device, the same for facerec-train and facerec-search (ARCHITECTURE §8)."""
    parser.add_argument("--no-cache", action="store_true",
                        help="decode the JPEGs of train.rec even when DATA/cache holds a decoded cache "
                             "(facerec-data cache DATA)")
    parser.add_argument("--cache-on-device", action="store_true",
                        help="hold the decoded cache in GPU memory (RAM on a CPU) when it takes at most half "
                             "of the free memory there; else read it from disk, with a warning")


def cache_options(args) -> dict:
    """prepare_data's keywords for the flags of ``add_cache_flags``."""
    return {"cache": not args.no_cache, "cache_on_device": args.cache_on_device}


def _train_set(pack, train_ids: list[int], augment: bool, cache: bool, cache_on_device: bool):
    """The decoded cache's dataset when the pack has one (and ``cache``), else JPEGs decoded per item."""
    import logging

    from facerec.data.augment import AdaFaceAugment
    from facerec.data.batch_augment import BatchAdaFaceAugment
    from facerec.data.cache import cache_folder, open_cache
    from facerec.data.cached_dataset import CachedFaceDataset
    from facerec.data.datasets import FaceDataset

    decoded = open_cache(pack) if cache else None  # a stale cache is an error, not a silent slow path
    log = logging.getLogger("facerec")
    if decoded is not None:
        log.info(f"training images from the decoded cache {decoded.folder} (augmented on the device)")
        return CachedFaceDataset(decoded, pack, train_ids, BatchAdaFaceAugment() if augment else None,
                                 on_device=cache_on_device)
    if cache_on_device:
        log.warning(f"--cache-on-device: {cache_folder(pack)} holds no decoded cache (build it with "
                    f"facerec-data cache {pack.root}); decoding JPEGs")
    # uint8 batches, normalised on the device by the trainer: the loader runs at JPEG-decode speed and moves
    # 4x fewer bytes to the GPU (bench/recordio_throughput.py).
    return FaceDataset(pack, identities=train_ids, transform=AdaFaceAugment() if augment else None,
                       normalize=False)


def prepare_data(data_dir: str | Path | None, output: str | Path, *, subset_ids: int | None = None,
                 holdout_ids: int | None = None, val_bins: list[str] | None = None, seed: int = 0,
                 augment: bool = True, need_val: bool = True, cache: bool = True,
                 cache_on_device: bool = False) -> RunData:
    """Build the training set and verification sets of a run (see the module docstring)."""
    from facerec.data.datasets import FacePack, split_identities

    if data_dir is None:
        from facerec.demo import demo_pack

        root, source = demo_pack(Path(output) / "demo_data"), "demo"
    else:
        root, source = Path(data_dir), str(data_dir)
        check_pack_dir(root)
    pack = FacePack(root)
    identities = list(range(pack.num_identities))
    if subset_ids is not None:
        if not 2 <= subset_ids <= len(identities):
            raise FaceRecError(f"--subset-ids: expected 2..{len(identities)} identities, got {subset_ids}")
        rng = np.random.default_rng(seed)
        identities = sorted(rng.choice(identities, size=subset_ids, replace=False).tolist())
    bin_paths = find_bins(root, val_bins) if data_dir is not None else []
    if holdout_ids is None:  # default: verify on the .bin packs when there are any, else on held-out identities
        holdout_ids = 0 if bin_paths else max(2, round(HOLDOUT_FRACTION * len(identities)))
    if holdout_ids and holdout_ids > len(identities) - 2:
        raise FaceRecError(f"--holdout-ids: expected fewer than {len(identities) - 1} (of {len(identities)} "
                           f"identities), got {holdout_ids}")
    held: list[int] = []
    train_ids = identities
    if holdout_ids:
        train_idx, held_idx = split_identities(len(identities), holdout_ids, seed)
        train_ids = [identities[i] for i in train_idx]
        held = [identities[i] for i in held_idx]
    val_sets = load_bin_sets(bin_paths) if bin_paths else []
    if held:
        val_sets.append(holdout_set(pack, held, seed))
    if need_val and not val_sets:
        raise FaceRecError(f"{root}: expected .bin verification packs or held-out identities (--holdout-ids N)")
    train_set = _train_set(pack, train_ids, augment, cache, cache_on_device)
    info = {"data": source, "pack_images": pack.num_images, "identities": len(identities),
            "train_identities": len(train_ids),
            "train_images": len(train_set), "decoded_cache": hasattr(train_set, "device_batches"),
            "holdout_identities": held,
            "val_sets": {vs.name: int(len(vs.issame)) for vs in val_sets}}
    return RunData(train_set, val_sets, train_set.num_classes, source, info)
