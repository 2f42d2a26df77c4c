"""What facerec-gallery's subcommands run (enroll, identify, remove, list) once their flags are parsed.

Every flag and input is checked before the model loads and before anything is created or written: a bad one
is one ``error:`` line and exit code 2, the gallery as it was. enroll and remove hold the gallery folder's lock
(nas_core.runlock: one writer per folder) from reading the gallery to its commit (facerec.deploy.gallery_files).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facerec.data.images import IMAGE_SUFFIXES, load_image
from facerec.deploy.embedding import FACE_SIZE, MODEL_SUFFIXES, find_images, load_embedder
from facerec.deploy.gallery import Gallery, GalleryModel, model_fingerprint
from facerec.deploy.gallery_files import GALLERY_JSON, read_gallery_info
from facerec.deploy.threshold import model_threshold
from facerec.errors import FaceRecError
from facerec.photos.detect import check_face_flags, command_detector, faces_in_photos
from nas_core.io import output_file
from nas_core.runlock import run_lock
from nas_core.runlog import progress_bar


def run_gallery_command(args: argparse.Namespace) -> int:
    """Run the parsed subcommand; 0 on success."""
    return {"enroll": run_enroll, "identify": run_identify, "remove": run_remove, "list": run_list}[args.command](args)


# --- checks before any work ----------------------------------------------------------------------------------

def _check_face_flags(args: argparse.Namespace) -> str:
    """The model's fingerprint, once the flags of the commands that embed photos are checked."""
    if args.batch_size < 1:
        raise FaceRecError(f"--batch-size {args.batch_size}: expected a positive number of faces")
    check_face_flags(getattr(args, "faces", "largest"), args.min_face, args.min_score)
    if args.model.suffix not in MODEL_SUFFIXES or not args.model.is_file():
        found = "not found" if not args.model.exists() else "not a model file"
        raise FaceRecError(f"{args.model}: expected an .onnx model or a facenas .pt checkpoint ({found})")
    return model_fingerprint(args.model)


def _check_model(folder: Path, info: dict, model: Path, fingerprint: str) -> None:
    built = info["model"]
    if built["fingerprint"] != fingerprint:
        raise FaceRecError(f"{folder}: built with model {built['file']} (fingerprint {built['fingerprint']}, "
                           f"{built['dim']}-d), not {model} (fingerprint {fingerprint})")


def _existing_gallery(folder: Path) -> dict | None:
    """gallery.json of the gallery in ``folder``, or None where a new one may be created (no folder, or empty)."""
    if (folder / GALLERY_JSON).exists() or (folder.exists() and not folder.is_dir()):
        return read_gallery_info(folder)
    if folder.is_dir() and any(p.name != ".facenas.lock" for p in folder.iterdir()):
        raise FaceRecError(f"{folder}: expected a gallery folder (holding {GALLERY_JSON}) or a new or empty "
                           "folder; it holds other files")
    output_file(folder / GALLERY_JSON)  # a file in the way or a read-only parent fails before any work
    return None


def _images_in(path: Path) -> list[Path]:
    if path.is_dir():
        return [path / name for name in find_images(path)]
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return [path]
    kind = "not found" if not path.exists() else "not an image file"
    raise FaceRecError(f"{path}: expected a photo ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)}) or a folder of "
                       f"photos ({kind})")


def _person_name(name: str, where: str) -> str:
    if not name.strip() or name != name.strip() or not name.isprintable():
        raise FaceRecError(f"{where} {name!r}: expected a person's name (printable, no spaces at its ends)")
    return name


def _enroll_photos(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(person, photo) to enroll: PHOTOS/<person>/... or, with --person, every photo given."""
    if args.person is not None:
        name = _person_name(args.person, "--person")
        return [(name, photo) for path in args.photos for photo in _images_in(path)]
    folder = args.photos[0]
    if len(args.photos) != 1 or not folder.is_dir():
        raise FaceRecError(f"{' '.join(map(str, args.photos))}: expected one folder with one sub-folder of photos "
                           "per person (or --person NAME with photos of one person)")
    people = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose or not people:
        found = f"photos at its top level ({loose[0].name})" if loose else "no sub-folders"
        raise FaceRecError(f"{folder}: expected one sub-folder of photos per person, found {found}; "
                           "--person NAME enrolls photos of one person")
    return [(_person_name(p.name, "person folder"), photo) for p in people for photo in _images_in(p)]


# --- faces of photos → embeddings ----------------------------------------------------------------------------

@dataclass
class _Photo:
    """One photo: the boxes of its faces kept (None each without detection), the embedding row of its first face,
    or why it has none."""

    path: Path
    boxes: list = field(default_factory=list)
    first_row: int = 0
    reason: str | None = None


def _crops(paths: list[Path], args: argparse.Namespace, faces: str) -> Iterator[tuple[Path, list, list, str | None]]:
    """(photo, aligned crops, boxes, reason) per photo, in order."""
    if not args.detect:
        for path in paths:
            image = load_image(path)
            if image.shape[:2] != (FACE_SIZE, FACE_SIZE):
                raise FaceRecError(f"{path}: expected a 112x112 aligned face (--no-detect), got "
                                   f"{image.shape[1]}x{image.shape[0]}")
            yield path, [image], [None], None
        return
    detector = command_detector(args.device, args.min_face)
    for found in faces_in_photos(paths, detector, faces=faces, min_face=args.min_face, min_score=args.min_score):
        yield found.path, found.crops, [list(face.box) for face in found.faces], found.reason


def _embed_photos(paths: list[Path], args: argparse.Namespace, faces: str) -> tuple[list[_Photo], np.ndarray | None]:
    """Every photo's faces embedded (flip-fused, L2-normalised), batch by batch; (photos, embeddings or None)."""
    embedder = load_embedder(args.model, device=args.device, batch_size=args.batch_size)
    photos: list[_Photo] = []
    pending: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    rows = 0
    with progress_bar(total=len(paths), unit="photo", desc=f"faces ({embedder.runtime})",
                      disable=not args.progress) as bar:
        for path, crops, boxes, reason in _crops(paths, args, faces):
            photos.append(_Photo(path, boxes, rows, None if crops else reason or "no face found"))
            pending += crops
            rows += len(crops)
            if len(pending) >= args.batch_size:
                chunks.append(embedder.embed(np.stack(pending)))
                pending = []
            bar.update(1)
        if pending:
            chunks.append(embedder.embed(np.stack(pending)))
    return photos, (np.concatenate(chunks) if chunks else None)


def _reasons(missed: list[_Photo]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in Counter(p.reason for p in missed).most_common())


# --- enroll --------------------------------------------------------------------------------------------------

def run_enroll(args: argparse.Namespace) -> int:
    fingerprint = _check_face_flags(args)
    items = _enroll_photos(args)
    folder = args.gallery
    info = _existing_gallery(folder)
    if info is not None:
        _check_model(folder, info, args.model, fingerprint)
    created = not folder.exists()
    try:
        with run_lock(folder, "facerec-gallery enroll"):
            return _enroll_locked(args, items, fingerprint)
    finally:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # a new gallery that failed leaves nothing behind


def _enroll_locked(args: argparse.Namespace, items: list[tuple[str, Path]], fingerprint: str) -> int:
    folder = args.gallery
    gallery = Gallery.open(folder, writer=True) if (folder / GALLERY_JSON).exists() else None
    if gallery is not None:  # read again under the lock: another writer may have come first
        _check_model(folder, read_gallery_info(folder), args.model, fingerprint)
    enrolled = gallery.enrolled() if gallery is not None else set()
    todo = [(name, photo.resolve()) for name, photo in items if (name, str(photo.resolve())) not in enrolled]
    threshold = model_threshold(args.model)
    photos, embeddings = _embed_photos([photo for _, photo in todo], args, "largest") if todo else ([], None)
    missed = [p for p in photos if p.reason is not None]
    if missed and args.strict:
        raise FaceRecError(f"{missed[0].path}: expected a usable face ({missed[0].reason}); {len(missed)} of "
                           f"{len(photos)} photos had none (--strict: nothing enrolled)")
    kept = [(name, p) for (name, _), p in zip(todo, photos) if p.reason is None]
    if gallery is None:
        if not kept:
            raise FaceRecError(f"{' '.join(map(str, args.photos))}: expected at least one photo with a usable face "
                               f"to create {folder}; none of {len(photos)} had one ({_reasons(missed)})")
        gallery = Gallery(folder, GalleryModel.of(args.model, embeddings.shape[1]), index_kind=args.index or "flat")
    before = (gallery.index_kind, gallery.threshold)
    if args.index is not None:
        gallery.use_index(args.index)
    gallery.threshold = threshold if threshold is not None else gallery.threshold
    if gallery.index_kind == "hnsw" and gallery.faces and kept:
        gallery.index(save_rebuilt=False)  # grown in place by add() rather than rebuilt
    added = gallery.add([name for name, _ in kept], embeddings[[p.first_row for _, p in kept]] if kept else
                        np.zeros((0, gallery.model.dim), np.float32), [str(p.path) for _, p in kept])
    if added or (gallery.index_kind, gallery.threshold) != before:
        gallery.save()
    skipped = f", {len(missed)} without a usable face ({_reasons(missed)})" if missed else ""
    print(f"enrolled {added} faces of {len({name for name, _ in kept})} people{skipped}, "
          f"{len(items) - len(todo)} already enrolled; {folder} holds {gallery.faces} faces of "
          f"{len(gallery.people)} people (index {gallery.index_kind})", file=sys.stderr)
    return 0


# --- identify ------------------------------------------------------------------------------------------------

def run_identify(args: argparse.Namespace) -> int:
    fingerprint = _check_face_flags(args)
    if args.top_k < 1:
        raise FaceRecError(f"--top-k {args.top_k}: expected a number of people >= 1")
    if args.threshold is not None and not (math.isfinite(args.threshold) and -1 <= args.threshold <= 1):
        raise FaceRecError(f"--threshold {args.threshold}: expected a cosine in [-1, 1]")
    folder = args.gallery
    info = read_gallery_info(folder)
    _check_model(folder, info, args.model, fingerprint)
    paths = [photo for path in args.photos for photo in _images_in(path)]
    gallery = Gallery.open(folder)
    if gallery.faces == 0:
        raise FaceRecError(f"{folder}: expected enrolled faces to identify against; the gallery is empty")
    threshold = _threshold_in_force(args, gallery)
    photos, embeddings = _embed_photos(paths, args, args.faces)
    matches = gallery.search(embeddings, args.top_k) if embeddings is not None else []
    report = _identify_report(args, gallery, threshold, photos, matches)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_identified(report)
    if threshold is None:
        print(f"no threshold: {args.model} carries no calibrated one and --threshold was not given; the top "
              f"{args.top_k} are listed but no face can be called unknown", file=sys.stderr)
    return 0


def _threshold_in_force(args: argparse.Namespace, gallery: Gallery) -> dict | None:
    """--threshold, else the model's calibrated one, else the one the gallery recorded with the same model."""
    if args.threshold is not None:
        return {"cosine": float(args.threshold), "source": "--threshold"}
    calibrated = model_threshold(args.model) or gallery.threshold
    return None if calibrated is None else {**calibrated, "source": "model"}


def _identify_report(args, gallery: Gallery, threshold: dict | None, photos: list[_Photo], matches) -> dict:
    cut = None if threshold is None else threshold["cosine"]
    entries = []
    for photo in photos:
        faces = []
        for i, box in enumerate(photo.boxes):
            top = matches[photo.first_row + i]
            known = None if cut is None else top[0][1] >= cut
            faces.append({"box": None if box is None else [round(v, 2) for v in box],
                          "identity": top[0][0] if known is not False else None, "unknown": None if known is None
                          else not known, "top": [{"name": name, "score": round(score, 6)} for name, score in top]})
        entries.append({"photo": str(photo.path), "reason": photo.reason, "faces": faces})
    return {"gallery": str(gallery.folder), "model": str(args.model), "index": gallery.index_kind,
            "threshold": threshold, "top_k": args.top_k, "photos": entries}


def _print_identified(report: dict) -> None:
    several = any(len(entry["faces"]) > 1 for entry in report["photos"])
    for entry in report["photos"]:
        if entry["reason"] is not None:
            print(f"{entry['photo']}\tno face ({entry['reason']})")
        for i, face in enumerate(entry["faces"], 1):
            label = f"{entry['photo']}#{i}" if several else entry["photo"]
            who = "unknown" if face["unknown"] else face["top"][0]["name"]
            hits = "\t".join(f"{hit['name']} {hit['score']:.4f}" for hit in face["top"])
            print(f"{label}\t{who}\t{hits}")


# --- remove, list --------------------------------------------------------------------------------------------

def run_remove(args: argparse.Namespace) -> int:
    folder = args.gallery
    read_gallery_info(folder)
    with run_lock(folder, "facerec-gallery remove"):
        gallery = Gallery.open(folder, writer=True)
        removed = gallery.remove(list(dict.fromkeys(args.names)))
        gallery.save()
    print(f"removed {removed} faces of {len(set(args.names))} people; {folder} holds {gallery.faces} faces of "
          f"{len(gallery.people)} people", file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    gallery = Gallery.open(args.gallery)
    people = gallery.faces_per_person()
    model = gallery.model
    report = {"gallery": str(gallery.folder), "model": {"file": model.file, "fingerprint": model.fingerprint,
                                                         "dim": model.dim},
              "index": gallery.index_kind, "threshold": gallery.threshold,
              "counts": {"people": len(people), "faces": gallery.faces}, "people": people}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    threshold = "none" if gallery.threshold is None else f"{gallery.threshold['cosine']:.4f} (the model's)"
    print(f"{gallery.folder}: {gallery.faces} faces of {len(people)} people; model {model.file} (fingerprint "
          f"{model.fingerprint}, {model.dim}-d); index {gallery.index_kind}; threshold {threshold}")
    for name, faces in people.items():
        print(f"{name}\t{faces}")
    return 0
