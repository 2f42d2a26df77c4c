"""Readers for the IJB-B / IJB-C meta files of InsightFace's IJB_release (ARCHITECTURE §5).

Every reader checks each line and raises EvalError("<file>: line N: expected ...") on the first bad one.
The 15.6M-line pair file is parsed by NumPy in C; only when that fails is it re-read line by line to
name the bad line.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from eval_protocols.align import landmark_problem
from eval_protocols.errors import EvalError


def _require(path: Path, expected: str) -> Path:
    if not path.is_file():
        raise EvalError(f"{path}: file not found; expected {expected}")
    try:
        path.open("rb").close()
    except OSError as exc:
        raise EvalError(f"{path}: expected {expected} ({exc.strerror})") from None
    return path


def _int64(text: str) -> int:
    """An id as the arrays hold it: ValueError for text that is not an integer or does not fit int64."""
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise ValueError(text)
    return value


def _text_lines(path: Path):
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield number, line.split()


def read_template_media(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``<t>_face_tid_mid.txt``: lines ``name tid mid`` → (names, templates, medias)."""
    path = _require(Path(path), "IJB meta lines 'name template_id media_id'")
    names, templates, medias = [], [], []
    for number, fields in _text_lines(path):
        try:
            if len(fields) != 3:
                raise ValueError
            names.append(fields[0])
            templates.append(_int64(fields[1]))
            medias.append(_int64(fields[2]))
        except ValueError:
            raise EvalError(f"{path}: line {number}: expected 'name template_id media_id'") from None
    if not names:
        raise EvalError(f"{path}: expected IJB meta lines 'name template_id media_id', found none")
    return names, np.asarray(templates, dtype=np.int64), np.asarray(medias, dtype=np.int64)


def read_landmarks(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``<t>_name_5pts_score.txt``: lines ``name x1 y1 .. x5 y5 score`` → (names, [N,5,2], scores)."""
    path = _require(Path(path), "IJB meta lines 'name x1 y1 ... x5 y5 detector_score'")
    names, points, scores = [], [], []
    for number, fields in _text_lines(path):
        try:
            if len(fields) != 12:
                raise ValueError
            values = [float(v) for v in fields[1:]]
            if not math.isfinite(values[10]):
                raise ValueError
        except ValueError:
            raise EvalError(f"{path}: line {number}: expected 'name x1 y1 ... x5 y5 detector_score' (finite "
                            "numbers)") from None
        problem = landmark_problem(values[:10])
        if problem is not None:
            raise EvalError(f"{path}: line {number}: {problem}")
        names.append(fields[0])
        points.append(values[:10])
        scores.append(values[10])
    if not names:
        raise EvalError(f"{path}: expected IJB meta lines 'name x1 y1 ... x5 y5 detector_score', found none")
    return names, np.asarray(points, dtype=np.float32).reshape(-1, 5, 2), np.asarray(scores, dtype=np.float32)


def read_template_pairs(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``<t>_template_pair_label.txt``: lines ``t1 t2 label`` → (t1, t2, label) int arrays."""
    path = _require(Path(path), "IJB meta lines 't1 t2 label'")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy only warns when it stops at a token it cannot parse
        try:
            flat = np.fromfile(path, dtype=np.int64, sep=" ")
        except (ValueError, Warning):
            flat = None
    if flat is None or flat.size % 3 or flat.size // 3 != _count_lines(path):
        flat = _scan_int_rows(path, 3, "'t1 t2 label'")
    if flat.size == 0:
        raise EvalError(f"{path}: expected IJB meta lines 't1 t2 label', found none")
    rows = flat.reshape(-1, 3)
    if not np.isin(rows[:, 2], (0, 1)).all():
        bad = int(np.flatnonzero(~np.isin(rows[:, 2], (0, 1)))[0])
        raise EvalError(f"{path}: pair {bad + 1}: expected label 0 or 1, found {rows[bad, 2]}")
    return rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].copy()


def _count_lines(path: Path) -> int:
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _scan_int_rows(path: Path, ncols: int, expected: str) -> np.ndarray:
    rows = []
    for number, fields in _text_lines(path):
        try:
            if len(fields) != ncols:
                raise ValueError
            rows.append([_int64(v) for v in fields])
        except ValueError:
            raise EvalError(f"{path}: line {number}: expected {expected}") from None
    return np.asarray(rows, dtype=np.int64).reshape(-1)


def read_template_subjects(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """1:N lists (``<t>_1N_gallery_G1.csv`` ...): header, then ``TEMPLATE_ID,SUBJECT_ID,...`` rows.

    Returns one (template, subject) per template, in sorted template order, the subject of its first row
    (as InsightFace's 1:N script takes it).
    """
    path = _require(Path(path), "IJB 1:N csv rows 'TEMPLATE_ID,SUBJECT_ID,...'")
    templates, subjects = [], []
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if number == 1 or not line.strip():
                continue  # header
            fields = line.split(",")
            try:
                templates.append(_int64(fields[0]))
                subjects.append(_int64(fields[1]))
            except (ValueError, IndexError):
                raise EvalError(f"{path}: line {number}: expected 'TEMPLATE_ID,SUBJECT_ID,...'") from None
    if not templates:
        raise EvalError(f"{path}: expected IJB 1:N rows 'TEMPLATE_ID,SUBJECT_ID,...', found none")
    unique, first = np.unique(np.asarray(templates, dtype=np.int64), return_index=True)
    return unique, np.asarray(subjects, dtype=np.int64)[first]


def one_n_files(meta_dir: Path, target: str) -> tuple[list[Path], Path] | None:
    """Gallery and probe lists as InsightFace's release names them (IJB-C G1/G2, IJB-B S1/S2), if present."""
    t = target.lower()
    gallery = [meta_dir / f"{t}_1N_gallery_{g}.csv" for g in (("G1", "G2") if t == "ijbc" else ("S1", "S2"))]
    probe = meta_dir / f"{t}_1N_probe_mixed.csv"
    if probe.is_file() and all(g.is_file() for g in gallery):
        return gallery, probe
    return None
