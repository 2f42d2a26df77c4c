"""How each kind's file is mutated: a weighted menu of the generic mutations (tools/fuzzing/mutations.py)
plus a few aimed at the format (a bit flipped in a RecordIO frame or IRHeader, a byte near the ends of a
pickle, a JSON value in a trace's settings), and which mutations cannot change a correct reader's result."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tools.fuzzing import mutations as mut
from tools.fuzzing.mutations import Mutation


def _menu(rng, menu: dict[str, float]) -> str:
    names = list(menu)
    weights = np.array([menu[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def _file_mutation(
    path: Path, rng, menu: dict[str, float], extra: dict[str, Callable] | None = None
) -> Mutation:
    name = _menu(rng, menu)
    table = {**mut.BYTE_MUTATIONS, **mut.LINE_MUTATIONS, **(extra or {})}
    if name in mut.JSON_MUTATIONS:
        return mut.mutate_json_file(path, rng, name)
    if name == "json_reformat":
        return mut.reformat_json_file(path, rng)
    return table[name](path, rng)


BYTES = {
    "truncate": 14,
    "flip": 24,
    "zero": 8,
    "insert": 8,
    "append": 8,
    "empty": 6,
    "directory": 6,
    "unreadable": 6,
    "delete": 6,
}


LINES = {"delete_line": 10, "duplicate_line": 8, "swap_lines": 6, "blank_line": 6, "crlf": 4, "field": 30}


def _record_offsets(idx: Path) -> list[int]:
    return [int(line.split("\t")[1]) for line in idx.read_text().splitlines() if line.strip()]


def _flip_in_record_header(path: Path, rng) -> Mutation:
    """Flip one byte in a record's frame, IRHeader or labels (random flips mostly land in JPEG data)."""
    offsets = _record_offsets(path.parent / "train.idx")
    start = offsets[int(rng.integers(len(offsets)))]
    data = bytearray(path.read_bytes())
    at = min(len(data) - 1, start + int(rng.integers(40)))
    data[at] ^= 1 << int(rng.integers(8))
    path.write_bytes(bytes(data))
    return Mutation("flip_header", path, f"bit flipped at byte {at} (record at {start})")


def rec(case: Path, rng) -> Mutation:
    return _file_mutation(
        case / "pack" / "train.rec",
        rng,
        {**BYTES, "flip_header": 40},
        {"flip_header": _flip_in_record_header},
    )


def idx(case: Path, rng) -> Mutation:
    m = _file_mutation(case / "pack" / "train.idx", rng, {**BYTES, **LINES})
    # Without a readable-looking .idx the reader scans the .rec: keys are the ordinals, as written.
    m.harmless |= m.name in ("delete", "directory", "duplicate_line", "swap_lines")
    return m


def property(case: Path, rng) -> Mutation:
    m = _file_mutation(case / "pack" / "property", rng, {**BYTES, **LINES, "field": 60})
    m.harmless |= m.name in ("delete", "directory")  # the image size then comes from the first image
    return m


def _flip_near_ends(path: Path, rng) -> Mutation:
    """Flip a byte in the first or last 256 bytes: the pickle's framing and its issame list."""
    data = bytearray(path.read_bytes())
    at = (
        int(rng.integers(min(256, len(data))))
        if rng.random() < 0.5
        else len(data) - 1 - int(rng.integers(256))
    )
    data[at] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))
    return Mutation("flip_ends", path, f"byte {at} of {len(data)} xor-ed")


def bin(case: Path, rng) -> Mutation:
    return _file_mutation(
        case / "in" / "lfw.bin", rng, {**BYTES, "flip_ends": 40}, {"flip_ends": _flip_near_ends}
    )


IJB_FILES = {
    "ijb_tid_mid": ("ijbc_face_tid_mid.txt",),
    "ijb_pairs": ("ijbc_template_pair_label.txt",),
    "ijb_5pts": ("ijbc_name_5pts_score.txt",),
    "ijb_1n": ("ijbc_1N_gallery_G1.csv", "ijbc_1N_gallery_G2.csv", "ijbc_1N_probe_mixed.csv"),
}


def ijb(kind: str) -> Callable[[Path, np.random.Generator], Mutation]:
    def mutate(case: Path, rng) -> Mutation:
        names = IJB_FILES[kind]
        path = case / "IJBC" / "meta" / names[int(rng.integers(len(names)))]
        m = _file_mutation(path, rng, {**BYTES, **LINES, "field": 50})
        if path.suffix == ".csv" and m.name == "blank_line" and "before line 1" in m.detail:
            m.harmless = False  # the first line of a 1:N list is its header
        return m

    return mutate


def tinyface(case: Path, rng) -> Mutation:
    aligned = case / "tinyface" / "aligned_pad_0.1_pad_high"
    originals = case / "tinyface" / "tinyface" / "Testing_Set"
    files = sorted(p for p in aligned.rglob("*") if p.is_file())
    how = _menu(rng, {"file": 70, "folder": 15, "originals": 10, "stray": 5})
    if how == "file":
        return _file_mutation(files[int(rng.integers(len(files)))], rng, BYTES)
    if how == "originals":  # the aligned copy is what is read: these files are never opened
        unread = sorted(p for p in originals.rglob("*") if p.is_file())
        m = _file_mutation(unread[int(rng.integers(len(unread)))], rng, BYTES)
        m.harmless = True
        return m
    if how == "stray":  # a file that is not an image, and a probe of an identity with no gallery match
        if rng.random() < 0.5:
            (aligned / "Probe" / "notes.txt").write_text("not an image\n")
            return Mutation("stray", aligned / "Probe" / "notes.txt", "a text file added", harmless=True)
        shutil.copyfile(aligned / "Probe" / "1_1.jpg", aligned / "Probe" / "999_1.jpg")
        return Mutation(
            "stray",
            aligned / "Probe" / "999_1.jpg",
            "a probe with no gallery match (closed set leaves it out)",
            harmless=True,
        )
    group = aligned / ["Probe", "Gallery_Match", "Gallery_Distractor"][int(rng.integers(3))]
    action = _menu(rng, {"delete": 3, "unreadable": 3, "empty": 2, "rename": 3})
    if action == "delete":
        return mut.delete(group, rng)
    if action == "unreadable":
        return mut.unreadable(group, rng)
    if action == "empty":
        for p in group.iterdir():
            p.unlink()
        return Mutation("empty_folder", group, "all files removed")
    victim = sorted(group.iterdir())[int(rng.integers(len(list(group.iterdir()))))]
    renamed = victim.with_name(victim.name.replace("_", ""))
    victim.rename(renamed)
    return Mutation("rename", renamed, f"{victim.name} renamed {renamed.name} (no identity prefix)")


def checkpoint(name: str, harmless_keys: tuple[str, ...] = ()) -> Callable:
    def mutate(case: Path, rng) -> Mutation:
        path = case / "in" / name if (case / "in" / name).exists() else case / "train" / name
        menu = {**BYTES, "ckpt_drop": 20, "ckpt_value": 30, "ckpt_tensor": 20}
        choice = _menu(rng, menu)
        if choice.startswith("ckpt_"):
            m = mut.mutate_checkpoint(path, rng, choice)
            m.harmless = any(m.detail.startswith(f"/{key}") for key in harmless_keys)
            return m
        return mut.BYTE_MUTATIONS[choice](path, rng)

    return mutate


def onnx(case: Path, rng) -> Mutation:
    return _file_mutation(case / "in" / "model.onnx", rng, BYTES)


def genotype(case: Path, rng) -> Mutation:
    menu = {
        "json_value": 40,
        "json_drop": 15,
        "json_duplicate": 10,
        "json_reformat": 8,
        "truncate": 6,
        "flip": 8,
        "empty": 3,
        "directory": 3,
        "unreadable": 3,
        "delete": 3,
    }
    return _file_mutation(case / "in" / "result.json", rng, menu)


def journal(case: Path, rng) -> Mutation:
    path = case / "run" / "journal.jsonl"
    name = _menu(
        rng,
        {
            "json_value": 30,
            "json_drop": 10,
            "json_duplicate": 6,
            "json_reformat": 6,
            **LINES,
            "field": 6,
            "truncate": 8,
            "flip": 8,
            "empty": 3,
            "directory": 2,
            "unreadable": 2,
            "delete": 2,
            "append": 3,
        },
    )
    if name in mut.JSON_MUTATIONS or name == "json_reformat":
        return mut.mutate_jsonl_line(path, rng, name)
    m = {**mut.BYTE_MUTATIONS, **mut.LINE_MUTATIONS}[name](path, rng)
    m.harmless |= m.name in ("duplicate_line", "swap_lines")  # trials are looked up by genotype and epochs
    return m


def trace(case: Path, rng) -> Mutation:
    path = case / "in" / "trace.json"
    if rng.random() < 0.75:
        doc = json.loads(path.read_text())
        name = _menu(rng, {"json_value": 60, "json_drop": 25, "json_duplicate": 15})
        # Aim half the value changes at the settings and the result, which the candidates outnumber.
        focus = [p for p in mut._paths(doc) if p[:1] in (("settings",), ("hard_coded",), ("result",))]
        if name == "json_value" and rng.random() < 0.5:
            doc, detail = mut.json_wrong_value(doc, rng, focus)
        else:
            doc, detail = mut.JSON_MUTATIONS[name](doc, rng)
        path.write_text(json.dumps(doc))
        return Mutation(name, path, detail)
    return _file_mutation(
        path,
        rng,
        {
            "json_reformat": 10,
            "truncate": 20,
            "flip": 30,
            "empty": 10,
            "directory": 10,
            "unreadable": 10,
            "delete": 10,
        },
    )
