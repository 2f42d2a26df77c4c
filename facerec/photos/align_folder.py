"""``facerec-data align SRC OUT``: a folder of everyday photos → aligned 112x112 faces in the same layout,
ready for ``facerec-data pack`` and ``make-bin``.

Each photo goes through the detector, keeps its largest face (``--faces all``: every face), and each kept face
is aligned onto the ArcFace template and written as ``OUT/<same sub-folders>/<photo stem>.jpg`` (``--faces all``:
``<stem>_<k>.jpg``, k = 0 for the largest). A photo that cannot be read, or has no face that passes
``--min-face`` and ``--min-score``, is skipped and listed with its reason; ``--strict`` stops at the first.

Journaled: ``OUT/align.jsonl`` starts with the run's settings and gets one line per photo done, appended after
its faces are written, so a rerun with the same flags continues where a killed one stopped (and one with other
flags is refused, naming the flag). ``OUT/align.json`` is the summary: counts overall and per set (the first
sub-folder of SRC), every skipped photo with its reason, the time taken. ``--workers N`` runs N processes with
one detector thread each.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from facerec.data.images import encode_jpeg
from facerec.errors import FaceRecError
from facerec.photos.detect import DETECTORS, REASONS, check_face_flags, create_detector, faces_in_photos
from nas_core.io import atomic_write_bytes, atomic_write_json
from nas_core.runlock import run_lock
from nas_core.runlog import log_to, progress_bar

JOURNAL, SUMMARY, LOG = "align.jsonl", "align.json", "align.log"
FORMAT = 1
CHUNK = 16  # photos per task handed to a worker: short enough for a smooth bar, long enough to batch


@dataclass(frozen=True)
class AlignSettings:
    """What defines an alignment run: a rerun must give the same (the journal's first line holds them)."""

    detector: str = "mtcnn"
    faces: str = "largest"
    min_face: int = 20
    min_score: float = 0.9
    quality: int = 95


def check_settings(settings: AlignSettings, workers: int) -> None:
    """Every flag in range, before anything is read or written."""
    check_face_flags(settings.faces, settings.min_face, settings.min_score)
    if settings.detector not in DETECTORS:
        raise FaceRecError(f"--detector {settings.detector}: expected one of {', '.join(DETECTORS.list())}")
    if not 1 <= settings.quality <= 100:
        raise FaceRecError(f"--quality {settings.quality}: expected a JPEG quality in 1..100")
    cpus = os.cpu_count() or 1
    if not 1 <= workers <= cpus:
        raise FaceRecError(f"--workers {workers}: expected 1 to {cpus} (this machine's CPUs)")


def find_photos(src: Path) -> list[str]:
    """Every image under ``src`` (any depth) as POSIX paths relative to it, natural order; hidden ones skipped."""
    from facerec.deploy.embedding import find_images

    if not src.is_dir():
        raise FaceRecError(f"{src}: expected a folder of photos (one sub-folder per person, or flat), not found")
    return find_images(src)


def output_names(photos: list[str]) -> dict[str, str]:
    """Photo → the stem its faces are written under (relative to OUT). Two photos of one folder with the same
    stem (``a.png``, ``a.jpg``) keep their suffix in the stem so neither overwrites the other."""
    stems = [str(PurePosixPath(p).with_suffix("")) for p in photos]
    clashes = {s for s, n in Counter(stems).items() if n > 1}
    return {p: (p.replace(".", "_") if s in clashes else s) for p, s in zip(photos, stems)}


def face_files(stem: str, count: int, policy: str) -> list[str]:
    if policy == "largest":
        return [f"{stem}.jpg"][:count]
    return [f"{stem}_{k}.jpg" for k in range(count)]


def _set_of(photo: str) -> str:
    parts = PurePosixPath(photo).parts
    return parts[0] if len(parts) > 1 else "."


class AlignJournal:
    """OUT/align.jsonl: the settings line, then one record per photo done. A torn last line (a kill during
    its write) is dropped on open, so the photo it described is simply done again."""

    def __init__(self, out: Path, settings: AlignSettings):
        self.path = out / JOURNAL
        self.header = {"format": FORMAT, "settings": asdict(settings)}
        self.done: dict[str, dict] = {}
        if self.path.exists():
            self._read()
        else:
            self.path.write_text(json.dumps(self.header) + "\n")

    def _read(self) -> None:
        lines = self.path.read_bytes().split(b"\n")
        complete = lines[:-1]  # the text after the last newline is torn or empty
        try:
            header = json.loads(complete[0]) if complete else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("settings"), dict):
            raise FaceRecError(f"{self.path}: expected the journal of a facerec-data align run (its first line "
                               "holds the settings)")
        for name, value in header["settings"].items():
            ours = self.header["settings"].get(name)
            if ours != value:
                raise FaceRecError(f"--{name.replace('_', '-')} {ours}: this folder was aligned with {value}; "
                                   "rerun with the same flags to continue it, or choose another OUT")
        for number, line in enumerate(complete[1:], 2):
            record = _record(line, self.path, number)
            self.done[record["photo"]] = record
        if lines[-1]:
            with open(self.path, "r+b") as f:  # drop the torn tail so appends start on a fresh line
                f.truncate(sum(len(line) + 1 for line in complete))

    def append(self, records: list[dict]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
                self.done[record["photo"]] = record
            f.flush()
            os.fsync(f.fileno())


def _record(line: bytes, path: Path, number: int) -> dict:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = None
    ok = (isinstance(record, dict) and isinstance(record.get("photo"), str)
          and isinstance(record.get("written"), list) and all(isinstance(w, str) for w in record["written"])
          and (record.get("reason") is None or record.get("reason") in REASONS))
    if not ok:
        raise FaceRecError(f"{path}: line {number}: expected a photo record of facerec-data align")
    return record


def check_output(out: Path, src: Path) -> None:
    """OUT must be new, empty, or an earlier alignment's folder (continued); never SRC or inside it."""
    if out.exists() and not out.is_dir():
        raise FaceRecError(f"{out}: expected an output folder, found a file")
    resolved_src, resolved_out = src.resolve(), out.resolve()
    if resolved_out == resolved_src or resolved_src in resolved_out.parents:
        raise FaceRecError(f"{out}: expected an output folder outside the photo folder {src}")
    if out.is_dir() and not (out / JOURNAL).exists() and any(p.name != ".facenas.lock" for p in out.iterdir()):
        raise FaceRecError(f"{out}: expected a new or empty folder, or one facerec-data align wrote; it holds "
                           "other files")
    parent = out.parent if not out.exists() else out
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise FaceRecError(f"{out}: expected a folder this user can write to")


# --- the work of one chunk (in this process or a worker) ---------------------------------------------------

_detector = None


def _start_worker(settings: AlignSettings, threads: int) -> None:
    global _detector
    _detector = create_detector(settings.detector, threads=threads, min_face=settings.min_face)


def align_chunk(src: Path, out: Path, photos: list[tuple[str, str]], settings: AlignSettings) -> list[dict]:
    """Detect, align and write the faces of ``photos`` [(photo, output stem)]; their journal records."""
    records = []
    paths = [src / photo for photo, _ in photos]
    results = faces_in_photos(paths, _detector, faces=settings.faces, min_face=settings.min_face,
                              min_score=settings.min_score)
    for (photo, stem), found in zip(photos, results):
        written = face_files(stem, len(found.crops), settings.faces)
        for name, crop in zip(written, found.crops):
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, encode_jpeg(crop, settings.quality))
        records.append({"photo": photo, "written": written, "faces": [f.to_dict() for f in found.faces],
                        "reason": found.reason, "detail": found.detail})
    return records


def _chunks_done(src: Path, out: Path, todo: list[tuple[str, str]], settings: AlignSettings, workers: int):
    """Yield each chunk's records as it finishes: in this process with one worker, else on a process pool
    (spawned, so no worker inherits a parent's torch threads) with two chunks in flight per worker."""
    chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
    if workers == 1:
        import torch

        threads = torch.get_num_threads()
        _start_worker(settings, 1)
        try:
            for chunk in chunks:
                yield align_chunk(src, out, chunk, settings)
        finally:
            torch.set_num_threads(threads)  # the caller (a test, a notebook) keeps its own setting
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(settings, 1)) as pool:
        pending, queue = set(), iter(chunks)
        try:
            while True:
                while len(pending) < 2 * workers and (chunk := next(queue, None)) is not None:
                    pending.add(pool.submit(align_chunk, src, out, chunk, settings))
                if not pending:
                    return
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()


def run_align(src: str | Path, out: str | Path, settings: AlignSettings, *, workers: int = 1,
              strict: bool = False, progress: bool = True) -> dict:
    """Align every photo of ``src`` into ``out`` (continuing an earlier run there); the summary written to
    OUT/align.json. Flags and folders are checked before anything is written."""
    src, out = Path(src), Path(out)
    check_settings(settings, workers)
    photos = find_photos(src)
    check_output(out, src)
    stems = output_names(photos)
    with run_lock(out, "facerec-data align"):
        journal = AlignJournal(out, settings)
        todo = [(p, stems[p]) for p in photos if p not in journal.done]
        with log_to(out / LOG, "facerec.align", echo=False) as log, \
                progress_bar(total=len(photos), initial=len(photos) - len(todo), unit="photo", desc="align",
                             disable=not progress) as bar:
            log.info("align %s -> %s: %d photos, %d to do, %s, %d worker(s)", src, out, len(photos), len(todo),
                     asdict(settings), workers)
            tic = time.perf_counter()
            for records in _chunks_done(src, out, todo, settings, workers):
                bad = next((i for i, r in enumerate(records) if r["reason"] is not None), None)
                if strict and bad is not None:
                    journal.append(records[:bad])
                    record = records[bad]
                    detail = f" ({record['detail']})" if record["detail"] else ""
                    raise FaceRecError(f"{src / record['photo']}: {record['reason']}{detail}; --strict stops here")
                journal.append(records)
                for r in records:
                    if r["reason"] is not None:
                        log.info("skipped %s: %s%s", r["photo"], r["reason"], f" ({r['detail']})" if r["detail"] else "")
                bar.update(len(records))
            seconds = time.perf_counter() - tic
            summary = _summary(src, settings, photos, journal.done, len(todo), seconds, workers)
            atomic_write_json(out / SUMMARY, summary)
            line = (f"aligned {summary['aligned_photos']} of {summary['photos']} photos ({summary['faces']} faces) "
                    f"into {out}; {summary['photos'] - summary['aligned_photos']} skipped (reasons in {out / SUMMARY})")
            log.info(line)
    print(line)
    return summary


def _summary(src: Path, settings: AlignSettings, photos: list[str], done: dict[str, dict], new: int,
             seconds: float, workers: int) -> dict:
    sets: dict[str, dict] = {}
    misses = []
    for photo in photos:
        record = done[photo]
        entry = sets.setdefault(_set_of(photo), {"photos": 0, "aligned": 0, "faces": 0,
                                                  "skipped": dict.fromkeys(REASONS, 0)})
        entry["photos"] += 1
        entry["faces"] += len(record["written"])
        if record["reason"] is None:
            entry["aligned"] += 1
        else:
            entry["skipped"][record["reason"]] += 1
            misses.append({"photo": photo, "reason": record["reason"], "detail": record.get("detail")})
    for entry in sets.values():
        entry["detection_rate"] = entry["aligned"] / entry["photos"]
    total = {key: sum(s[key] for s in sets.values()) for key in ("photos", "aligned", "faces")}
    skipped = {reason: sum(s["skipped"][reason] for s in sets.values()) for reason in REASONS}
    return {"format": FORMAT, "source": str(src), "settings": asdict(settings), "photos": total["photos"],
            "aligned_photos": total["aligned"], "faces": total["faces"],
            "detection_rate": total["aligned"] / max(total["photos"], 1), "skipped": skipped, "sets": sets,
            "misses": misses, "this_run": {"photos": new, "seconds": round(seconds, 3), "workers": workers,
                                           "photos_per_second": round(new / seconds, 3) if seconds > 0 else None}}
