"""What facerec-data's subcommands do (ARCHITECTURE §5, §8): pack image folders into InsightFace RecordIO,
unpack, inspect, verify, build the decoded cache, rebuild a lost .idx, make .bin verification packs.

Each job takes the parsed flags of its subcommand (facerec.cli.data) and returns the exit code; bad input
raises FaceRecError (one line, exit 2) before anything is written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from eval_protocols.bins import decode_image, write_bin
from facerec.data.cache import build_cache, cache_bytes, cache_folder, cache_state, open_cache
from facerec.data.datasets import FacePack, sample_pairs
from facerec.data.images import encode_jpeg, fit_face, load_image, read_image_folder
from facerec.data.recordio import rebuild_index, unpack_header, write_face_pack
from facerec.errors import FaceRecError
from nas_core.io import atomic_write_json, output_file
from nas_core.runlog import progress_bar

FIT_RULE = ("scaled to fit (aspect kept), short side padded symmetrically by edge replication; "
            "e.g. ORL 92x112 -> 10 replicated columns each side")


# --- pack / unpack ---------------------------------------------------------------------------------

def _image_folders(folders: list[Path]) -> list:
    """The identities of one or several image folders, folder after folder. Several folders are distinct
    people (``lfw_train``, ``aligned/pins``, ``aligned/celeba``): each name is prefixed with its folder's."""
    if len(folders) == 1:
        return read_image_folder(folders[0])
    labels = [folder.name for folder in folders]
    if len(set(labels)) < len(labels):
        labels = [str(folder) for folder in folders]
    return [(f"{label}/{name}", paths) for folder, label in zip(folders, labels)
            for name, paths in read_image_folder(folder)]


def _select(identities: list, args) -> list:
    start, stop = args.identities_from, args.identities_to
    where = " + ".join(str(folder) for folder in args.image_folder)
    if start < 0 or (stop is not None and stop <= start) or start >= len(identities):
        raise FaceRecError(f"{where}: expected an identity range inside 0..{len(identities)}, got "
                           f"[{start}, {stop if stop is not None else len(identities)})")
    chosen = identities[start:stop]
    if args.limit_ids is not None:
        if args.limit_ids < 1:
            raise FaceRecError(f"--limit-ids: expected a positive count, got {args.limit_ids}")
        chosen = chosen[:args.limit_ids]
    return chosen


def _pack(args) -> int:
    identities = _select(_image_folders(args.image_folder), args)
    total = sum(len(paths) for _, paths in identities)
    with progress_bar(total=total, unit="img", desc="pack", disable=not args.progress) as bar:
        def images(paths):
            for path in paths:
                yield load_image(path)
                bar.update()

        result = write_face_pack(args.out, (images(paths) for _, paths in identities),
                                 image_size=(args.image_size, args.image_size), quality=args.quality,
                                 names=[name for name, _ in identities])
    sources = [str(folder) for folder in args.image_folder]
    result.update(source=sources[0] if len(sources) == 1 else sources, fit=FIT_RULE, quality=args.quality)
    atomic_write_json(Path(args.out) / "pack.json", result)
    print(f"packed {result['images']} images of {result['identities']} identities into {args.out} "
          f"({args.image_size}x{args.image_size}; {FIT_RULE})")
    return 0


def _unpack(args) -> int:
    pack = FacePack(args.pack)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise FaceRecError(f"{out}: expected a new or empty folder, it holds files")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700
    try:
        names = pack.names()
        with progress_bar(total=pack.num_images, unit="img", desc="unpack", disable=not args.progress) as bar:
            for identity, name in enumerate(names):
                folder = tmp / name
                folder.mkdir()
                for key in pack.identity_keys(identity):
                    data = pack.image_bytes(key)
                    decode_image(data, None, source=pack.where(key))  # never unpack a corrupt image
                    (folder / f"{key}.jpg").write_bytes(data)
                    bar.update()
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"unpacked {pack.num_images} images of {pack.num_identities} identities into {out}")
    return 0


# --- inspect / verify / index ----------------------------------------------------------------------

def _inspect(args) -> int:
    pack = FacePack(args.pack)
    counts = [len(pack.identity_keys(i)) for i in range(pack.num_identities)]
    info = {
        "path": str(args.pack), "layout": "face_set" if pack.is_face_set else "plain",
        "images": pack.num_images, "identities": pack.num_identities, "image_size": list(pack.image_size),
        "per_identity": {"min": int(min(counts)), "median": float(np.median(counts)),
                         "mean": float(np.mean(counts)), "max": int(max(counts))},
        "counts": counts,
        "cache": {"path": str(cache_folder(pack)), "state": cache_state(pack),
                  "bytes": cache_bytes(len(pack.image_keys()), pack.image_size)},
    }
    if args.json:
        print(json.dumps(info))
        return 0
    per = info["per_identity"]
    layout = "InsightFace face set (header record 0)" if pack.is_face_set else "plain pack (every key an image)"
    print(f"pack:        {args.pack} ({layout})\nimages:      {info['images']}\n"
          f"identities:  {info['identities']}\nimage size:  {pack.image_size[0]}x{pack.image_size[1]}\n"
          f"per identity: min {per['min']}, median {per['median']:g}, mean {per['mean']:.2f}, max {per['max']}\n"
          f"cache:       {info['cache']['state']} ({info['cache']['path']}: {info['cache']['bytes'] / 1e9:.2f} GB "
          "decoded; facerec-data cache builds it)")
    return 0


def _check_keys(pack: FacePack) -> tuple[dict[int, int], set[int]]:
    """({offset: key}, image keys) after checking the index against the pack's layout."""
    reader = pack.reader
    key_at: dict[int, int] = {}
    for key, offset in reader.index.items():
        if offset in key_at:
            raise FaceRecError(f"{reader.idx_path}: keys {key_at[offset]} and {key} both point at offset {offset}; "
                               "expected one record per key")
        key_at[offset] = key
    images = set(pack.image_keys())
    if pack.is_face_set and len(images) != pack.num_images:
        orphans = sorted(set(range(1, pack.num_images + 1)) - images)
        raise FaceRecError(f"{reader.rec_path}: keys {orphans[:3]}: expected every image key 1..{pack.num_images} "
                           "inside an identity record's range")
    if pack.is_face_set and reader.idx_path is not None:
        # Key 0, the images 1..a-1 and the identity records a..b-1, each once (ARCHITECTURE §5).
        expected = set(range(pack.num_images + pack.num_identities + 1))
        for key in sorted(expected.symmetric_difference(reader.index))[:1]:
            what = "is missing" if key in expected else "is not a key of the pack's layout"
            raise FaceRecError(f"{reader.idx_path}: key {key} {what}; expected keys 0..{max(expected)}")
    return key_at, images


def _check_cached(pack: FacePack, cached, key: int, image: np.ndarray) -> None:
    """The decoded cache's row of ``key`` holds the image just decoded and its identity."""
    row = int(cached.rows([key])[0])
    if not np.array_equal(cached.images[row], image) or int(cached.labels[row]) != pack.label(key):
        raise FaceRecError(f"{cached.folder / 'images.u8'}: row {row}: expected the decoded image and label of "
                           f"{pack.where(key)}, they differ; stale cache: rebuild with facerec-data cache {pack.root}")


def _verify(args) -> int:
    pack = FacePack(args.pack)
    reader = pack.reader
    key_at, images = _check_keys(pack)
    cached = open_cache(pack)  # a stale one fails now, before the long scan
    starts: set[int] = set()
    decoded = 0
    with progress_bar(total=reader.size, unit="B", unit_scale=True, desc="verify", disable=not args.progress) as bar:
        last = 0
        for offset, payload in reader.scan():
            key = key_at.get(offset)
            where = f"{reader.rec_path}: offset {offset}{reader.key_note(key)}"
            if key is None and reader.idx_path is not None:
                raise FaceRecError(f"{reader.idx_path}: no key for the record at offset {offset} of "
                                   f"{reader.rec_path.name}; expected every record indexed")
            header, start = unpack_header(payload, where)
            if key in images:
                image = decode_image(payload[start:], None, source=where)
                if image.shape[:2] != tuple(pack.image_size):
                    raise FaceRecError(f"{where}: expected a {pack.image_size[0]}x{pack.image_size[1]} image (the "
                                       f"size given by {pack.image_size_source}), got {image.shape[0]}x{image.shape[1]}")
                label = _label(header)
                if pack.is_face_set and not (math.isfinite(label) and int(label) == pack.label(key)):
                    raise FaceRecError(f"{where}: expected label {pack.label(key)} (its identity record), "
                                       f"found {label:g}")
                if cached is not None:
                    _check_cached(pack, cached, key, image)
                decoded += 1
            starts.add(offset)
            bar.update(offset - last)
            last = offset
    if not starts.issuperset(key_at):
        missing = min(set(key_at) - starts)
        raise FaceRecError(f"{reader.idx_path}: key {key_at[missing]}: offset {missing} is not the start of a "
                           f"record in {reader.rec_path.name}")
    state = "matches every image" if cached is not None else cache_state(pack)
    print(f"ok: {args.pack}: {len(key_at)} records, {decoded} images decode; decoded cache: {state}")
    return 0


def _cache(args) -> int:
    pack = FacePack(args.pack)
    if args.workers < 1 or args.chunk < 1:
        raise FaceRecError(f"--workers {args.workers} --chunk {args.chunk}: expected positive numbers")
    size = cache_bytes(len(pack.image_keys()), pack.image_size)
    if cache_state(pack) == "complete" and not args.restart:
        print(f"{cache_folder(pack)}: the decoded cache matches {pack.reader.rec_path.name} already "
              f"({size / 1e9:.2f} GB; --restart rebuilds it)")
        return 0
    folder = build_cache(pack, workers=args.workers, restart=args.restart, chunk=args.chunk, progress=args.progress)
    print(f"wrote {folder}: {len(pack.image_keys())} images decoded ({size / 1e9:.2f} GB)")
    return 0


def _label(header) -> float:
    return float(header.label[0]) if header.flag > 0 else float(header.label)


def _index(args) -> int:
    if not args.rec.is_file():
        raise FaceRecError(f"{args.rec}: expected a RecordIO .rec file, not found")
    idx = rebuild_index(args.rec, args.idx)
    print(f"wrote {idx}: {sum(1 for _ in open(idx))} records")
    return 0


# --- align -----------------------------------------------------------------------------------------

def _align(args) -> int:
    from facerec.photos.align_folder import AlignSettings, run_align

    settings = AlignSettings(detector=args.detector, faces=args.faces, min_face=args.min_face,
                             min_score=args.min_score, quality=args.quality)
    run_align(args.photos, args.out, settings, workers=args.workers, strict=args.strict, progress=args.progress)
    return 0


# --- make-bin --------------------------------------------------------------------------------------

def _make_bin(args) -> int:
    output_file(args.out)  # fails before any image is read
    groups = [paths for _, paths in read_image_folder(args.image_folder)]
    pairs, issame = sample_pairs(groups, args.pairs, args.seed, by=args.sampling)
    size = (args.image_size, args.image_size)
    cache: dict[Path, bytes] = {}
    encoded = []
    paths = [p for pair in pairs for p in pair]
    with progress_bar(total=len(paths), unit="img", desc="make-bin", disable=not args.progress) as bar:
        for path in paths:
            if path not in cache:
                cache[path] = encode_jpeg(fit_face(load_image(path), size), args.quality)
            encoded.append(cache[path])
            bar.update()
    write_bin(args.out, encoded, issame.tolist())
    print(f"wrote {args.out}: {len(issame)} pairs ({int(issame.sum())} same), {len(cache)} distinct images")
    return 0


JOBS = {"align": _align, "pack": _pack, "unpack": _unpack, "inspect": _inspect, "verify": _verify, "cache": _cache, "index": _index,
        "make-bin": _make_bin}


def run_data_command(args: argparse.Namespace) -> int:
    """Run the facerec-data subcommand ``args.command`` with its parsed flags; 0 on success."""
    return JOBS[args.command](args)
