"""The data of a training or search run: which identities train, which verify (ARCHITECTURE §4).

`--data DIR` is a RecordIO face pack (train.rec/.idx/property), possibly with `.bin` packs beside it;
no --data means the built-in synthetic demo set (facerec.data.demo), cached under the output folder.
`--subset-ids N` keeps N identities (seeded). The fitness (what a search ranks on and what facerec-train
selects model.pt on) is measured on pairs of identities held out of the training pack (`--holdout-ids N`,
default 10 %) unless the user asks for the `.bin` packs (`--val-bins a,b`, the paper's protocol): never rank
or select on a benchmark by default. `.bin` packs may also be loaded as a report only (facerec-train).
Training images come from the pack's decoded cache when it has one (`facerec-data cache DATA`; `--no-cache`
decodes the JPEGs instead), ARCHITECTURE §8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facerec.errors import FaceRecError
from facerec.train.validation import VerificationSet, find_bins, holdout_set, load_bin_sets

HOLDOUT_FRACTION = 0.10


@dataclass
class RunData:
    train_set: object  # facerec.data.datasets.FaceDataset or facerec.data.cached_dataset.CachedFaceDataset
    val_sets: list[VerificationSet]  # the fitness: scored after every epoch
    num_classes: int
    source: str  # the data folder, or "demo"
    info: dict = field(default_factory=dict)  # identities used / held out, pairs: written into settings
    report_sets: list[VerificationSet] = field(default_factory=list)  # .bin packs scored as a report only


def default_holdout(identities: int, fitness: str | None) -> int:
    """Identities held out when --holdout-ids is not given: 10 % (at least 2) when the fitness is measured on
    them, none when it is on the .bin packs or nothing is selected (training then uses every identity)."""
    return max(2, round(HOLDOUT_FRACTION * identities)) if fitness == "holdout" else 0


def describe_fitness(fitness_on: dict) -> str:
    """One phrase for logs: what the fitness of a run (``info["fitness_on"]``) is measured on."""
    sets = ", ".join(f"{name} {pairs} pairs" for name, pairs in fitness_on["sets"].items())
    if fitness_on["kind"] == "holdout":
        return (f"pairs of {fitness_on['identities']} identities held out of the training pack ({sets})")
    if fitness_on["kind"] == "bins":
        return (f"the benchmark .bin packs asked for with --val-bins ({sets}), so scores later reported on them "
                "are optimistic")
    return "nothing (no held-out identities)"


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


def check_identities(data_dir: str | Path | None, *, subset_ids: int | None, holdout_ids: int | None,
                     fitness: str | None) -> None:
    """--subset-ids and --holdout-ids against the identities the data hold (the demo set's without --data), before
    a command makes its output folder: the same ranges prepare_data enforces."""
    if data_dir is None:
        from facerec.data.demo import DEMO_IDENTITIES

        count = DEMO_IDENTITIES
    else:
        from facerec.data.datasets import FacePack

        count = FacePack(Path(data_dir)).num_identities
    if subset_ids is not None and not 2 <= subset_ids <= count:
        raise FaceRecError(f"--subset-ids {subset_ids}: expected 2..{count} identities (of {count} in "
                           f"{data_dir or 'the demo set'})")
    used = subset_ids or count
    held = default_holdout(used, fitness) if holdout_ids is None else holdout_ids
    if not 0 <= held <= used - 2:
        raise FaceRecError(f"--holdout-ids {held}: expected 0 to {used - 2} (of {used} identities"
                           f"{'' if data_dir else ' of the demo set'})")


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
                 holdout_ids: int | None = None, val_bins: list[str] | None = None, fitness: str | None = "holdout",
                 report_bins: bool = False, seed: int = 0, augment: bool = True, need_val: bool = True,
                 cache: bool = True, cache_on_device: bool = False) -> RunData:
    """Build the training set and verification sets of a run (see the module docstring).

    ``fitness``: "holdout" (pairs of held-out identities), "bins" (the .bin packs ``val_bins`` names, or all
    of them) or None (nothing to select on: no identities held out unless ``holdout_ids`` asks). With
    ``report_bins`` the .bin packs that are not the fitness become ``report_sets``.
    """
    from facerec.data.datasets import FacePack

    if fitness not in ("holdout", "bins", None):
        raise ValueError(f"fitness: expected 'holdout', 'bins' or None, got {fitness!r}")
    if data_dir is None:
        from facerec.data.demo import demo_pack

        root, source = demo_pack(Path(output) / "demo_data"), "demo"
    else:
        root, source = Path(data_dir), str(data_dir)
        check_pack_dir(root)
    pack = FacePack(root)
    identities = _used_identities(pack, subset_ids, seed)
    bin_paths = find_bins(root, val_bins) if data_dir is not None and (fitness == "bins" or report_bins) else []
    if fitness == "bins" and not bin_paths:
        raise FaceRecError(f"{root}: expected .bin verification packs to rank or select on (--val-bins)")
    if fitness == "bins" and holdout_ids:
        raise FaceRecError(f"--holdout-ids: expected none when the fitness is on .bin packs (--val-bins), "
                           f"got {holdout_ids}")
    train_ids, held = _split(identities, default_holdout(len(identities), fitness) if holdout_ids is None
                             else holdout_ids, seed)
    if fitness == "bins":
        val_sets = load_bin_sets(bin_paths)
    else:
        val_sets = [holdout_set(pack, held, seed)] if held else []
    if need_val and not val_sets:
        raise FaceRecError(f"{root}: expected held-out identities to measure the fitness on (--holdout-ids N > 0)")
    report_sets = load_bin_sets(bin_paths) if report_bins and fitness != "bins" else []
    train_set = _train_set(pack, train_ids, augment, cache, cache_on_device)
    kind = "bins" if fitness == "bins" else "holdout" if held else None
    info = {"data": source, "pack_images": pack.num_images, "identities": len(identities),
            "train_identities": len(train_ids),
            "train_images": len(train_set), "decoded_cache": hasattr(train_set, "device_batches"),
            "holdout_identities": held,
            "val_sets": {vs.name: int(len(vs.issame)) for vs in val_sets},
            "fitness_on": _fitness_on(kind, val_sets, len(held)),
            "report_sets": {vs.name: int(len(vs.issame)) for vs in report_sets}}
    return RunData(train_set, val_sets, train_set.num_classes, source, info, report_sets)


def _fitness_on(kind: str | None, val_sets: list[VerificationSet], held: int) -> dict:
    """What the fitness is measured on, as result.json / metrics.json state it (with a phrase for reports)."""
    on = {"kind": kind, "sets": {vs.name: int(len(vs.issame)) for vs in val_sets}, "identities": held}
    return {**on, "text": describe_fitness(on)}


def _used_identities(pack, subset_ids: int | None, seed: int) -> list[int]:
    """The pack's identities, or a seeded choice of ``subset_ids`` of them (--subset-ids)."""
    identities = list(range(pack.num_identities))
    if subset_ids is None:
        return identities
    if not 2 <= subset_ids <= len(identities):
        raise FaceRecError(f"--subset-ids: expected 2..{len(identities)} identities, got {subset_ids}")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(identities, size=subset_ids, replace=False).tolist())


def _split(identities: list[int], holdout_ids: int, seed: int) -> tuple[list[int], list[int]]:
    """(training identities, held-out identities): a seeded split holding ``holdout_ids`` out."""
    from facerec.data.datasets import split_identities

    if holdout_ids < 0 or holdout_ids > len(identities) - 2:
        raise FaceRecError(f"--holdout-ids: expected 0 to {len(identities) - 2} (of {len(identities)} "
                           f"identities), got {holdout_ids}")
    if not holdout_ids:
        return identities, []
    train_idx, held_idx = split_identities(len(identities), holdout_ids, seed)
    return [identities[i] for i in train_idx], [identities[i] for i in held_idx]
