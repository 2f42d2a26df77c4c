"""How the inputs of the newer commands are mutated (tools/fuzzing/user_kinds.py): published weight files,
landmark lists, gallery .npz files, image folders, decoded caches, report folders, output paths and
custom-named .bin packs. Generic mutations come from tools/fuzzing/mutations.py; the ones here aim at what
each format can hold (a sparse tensor, a landmark a thousand pixels off the image, an object array, an
odd-sized face, a settings value of 1e308, an output folder where a file should go)."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np

from tools.fuzzing import menus
from tools.fuzzing import mutations as mut
from tools.fuzzing.mutations import Mutation

# Numbers no reader should let through to arithmetic or a plot: out of any range, beyond float, subnormal.
EXTREME_NUMBERS = [1e308, -1e308, 10**400, -(10**400), 1e-320, 1e30, -1e30]


# --- weight files (facerec-import) ------------------------------------------------------------------


class _RunsCode:
    """Pickles as a call of os.system: a weights file that would run a command when loaded."""

    def __reduce__(self):
        return (os.system, ("true",))


def _weights_special(path: Path, rng, name: str) -> Mutation:
    import torch

    if name == "pickle_code":
        with path.open("wb") as f:
            pickle.dump({"conv1.weight": _RunsCode()}, f, protocol=4)  # torch warns about protocol 4 pickles
        return Mutation(name, path, "a protocol-4 pickle naming os.system")
    if name == "plain_pickle":
        obj = torch.load(path, map_location="cpu", weights_only=True)
        with path.open("wb") as f:
            pickle.dump(obj, f, protocol=4)
        return Mutation(name, path, "the same content as a plain protocol-4 pickle")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if name == "legacy_format":  # the same tensors in torch's pre-1.6 file layout: must read the same
        torch.save(obj, path, _use_new_zipfile_serialization=False)
        return Mutation(name, path, "re-saved in torch's legacy (non-zip) layout", harmless=True)
    state = obj["state_dict"] if "state_dict" in obj else obj
    key = sorted(k for k, v in state.items() if v.is_floating_point() and v.ndim >= 1)[
        int(rng.integers(sum(1 for v in state.values() if v.is_floating_point() and v.ndim >= 1)))]
    how = mut._pick(rng, ["sparse", "int32", "complex", "bool", "float64", "nan"])
    value = state[key]
    state[key] = {"sparse": lambda: value.float().to_sparse(), "int32": lambda: value.to(torch.int32),
                  "complex": lambda: value.to(torch.complex64), "bool": lambda: value != 0,
                  "float64": lambda: value.to(torch.float64),
                  "nan": lambda: torch.full_like(value, math.nan)}[how]()
    torch.save(obj, path)
    # float64 weights are cast to the model's float32 on load: the same net as the float16 subject
    return Mutation(name, path, f"{key}: {how}", harmless=how == "float64")


def weights(rel: str, harmless_keys: tuple[str, ...] = ()):
    def mutate(case: Path, rng) -> Mutation:
        path = case / rel
        menu = {**menus.BYTES, "ckpt_drop": 15, "ckpt_value": 20, "ckpt_tensor": 20, "tensor_kind": 30,
                "pickle_code": 8, "plain_pickle": 6, "legacy_format": 6}
        choice = menus._menu(rng, menu)
        if choice.startswith("ckpt_"):
            m = mut.mutate_checkpoint(path, rng, choice)
            m.harmless = any(m.detail.startswith(f"/{key}") for key in harmless_keys)
            return m
        if choice in menus.BYTES:
            return mut.BYTE_MUTATIONS[choice](path, rng)
        return _weights_special(path, rng, choice)

    return mutate


# --- landmark lists (facerec-embed --landmarks) -----------------------------------------------------


def _landmark_line(path: Path, rng) -> tuple[list[str], int, list[str]]:
    lines = path.read_text().splitlines()
    numbered = [i for i, line in enumerate(lines) if len(line.split()) >= 11]
    i = numbered[int(rng.integers(len(numbered)))]
    return lines, i, lines[i].split()


def _far_point(path: Path, rng, extreme: bool) -> Mutation:
    lines, i, fields = _landmark_line(path, rng)
    at = 1 + int(rng.integers(10))
    if extreme:
        fields[at] = repr(float(mut._pick(rng, [1e30, -1e30, 1e300, -3.5e38])))
    else:  # thousands of pixels off a crop of a few hundred
        fields[at] = f"{float(fields[at]) + float(mut._pick(rng, [-1, 1])) * float(rng.integers(1500, 9000)):.2f}"
    lines[i] = " ".join(fields)
    path.write_text("\n".join(lines) + "\n")
    return Mutation("far_point" if not extreme else "huge_point", path, f"line {i + 1} field {at + 1} -> {fields[at]}")


def _comment_line(path: Path, rng) -> Mutation:
    lines = path.read_text().splitlines()
    at = int(rng.integers(len(lines) + 1))
    lines.insert(at, "# a comment")
    path.write_text("\n".join(lines) + "\n")
    return Mutation("comment", path, f"comment line inserted before line {at + 1}", harmless=True)


def landmarks(case: Path, rng) -> Mutation:
    path = case / "in" / "landmarks.txt"
    name = menus._menu(rng, {**menus.BYTES, **menus.LINES, "field": 40, "far_point": 25, "huge_point": 12,
                             "comment": 5})
    if name in ("far_point", "huge_point"):
        return _far_point(path, rng, extreme=name == "huge_point")
    if name == "comment":
        return _comment_line(path, rng)
    return {**mut.BYTE_MUTATIONS, **mut.LINE_MUTATIONS}[name](path, rng)


# --- gallery .npz (facerec-embed --gallery) ---------------------------------------------------------


def _npz_rewrite(path: Path, rng) -> Mutation:
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    how = mut._pick(rng, ["nan_row", "inf", "other_dim", "int", "one_d", "no_rows", "names_int", "names_short",
                          "drop", "extra", "object", "huge", "float64"])
    emb, names = arrays["embeddings"], arrays["names"]
    row = int(rng.integers(len(emb)))
    if how == "nan_row":
        emb = emb.copy()
        emb[row] = np.nan
    edits = {
        "nan_row": lambda: arrays.update(embeddings=emb),
        "inf": lambda: arrays.update(embeddings=np.full_like(emb, np.inf)),
        "other_dim": lambda: arrays.update(embeddings=np.ones((len(emb), 7), np.float32)),
        "int": lambda: arrays.update(embeddings=(emb * 100).astype(np.int64)),
        "one_d": lambda: arrays.update(embeddings=emb[:, 0]),
        "no_rows": lambda: arrays.update(embeddings=emb[:0], names=names[:0]),
        "names_int": lambda: arrays.update(names=np.arange(len(names))),
        "names_short": lambda: arrays.update(names=names[:-1]),
        "drop": lambda: arrays.pop(mut._pick(rng, ["names", "embeddings"])),
        "extra": lambda: arrays.update(notes=np.asarray("not read")),
        "object": lambda: arrays.update(names=np.asarray(list(names), dtype=object)),
        "huge": lambda: arrays.update(embeddings=np.full_like(emb, 3e38)),
        "float64": lambda: arrays.update(embeddings=emb.astype(np.float64)),
    }
    edits[how]()
    with path.open("wb") as f:
        np.savez(f, **arrays)  # an object array is pickled: a reader must refuse it
    return Mutation("npz", path, how, harmless=how == "extra")  # an array nobody reads changes nothing


def gallery(case: Path, rng) -> Mutation:
    path = case / "in" / "gallery.npz"
    name = menus._menu(rng, {**menus.BYTES, "npz": 60})
    return _npz_rewrite(path, rng) if name == "npz" else mut.BYTE_MUTATIONS[name](path, rng)


# --- image folders (facerec-embed --images) ---------------------------------------------------------


def images(case: Path, rng) -> Mutation:
    root = case / "faces"
    files = sorted(p for p in root.rglob("*") if p.is_file())
    victim = files[int(rng.integers(len(files)))]
    name = menus._menu(rng, {**menus.BYTES, "odd_size": 20, "grey": 6, "stray": 5, "hidden": 5, "png": 5})
    if name in menus.BYTES:
        return mut.BYTE_MUTATIONS[name](victim, rng)
    if name == "stray":
        (victim.parent / "notes.txt").write_text("not an image\n")
        return Mutation(name, victim.parent / "notes.txt", "a text file added", harmless=True)
    if name == "hidden":
        shutil.copyfile(victim, victim.parent / ".thumb.jpg")
        return Mutation(name, victim.parent / ".thumb.jpg", "a hidden image added (never read)", harmless=True)
    image = cv2.imread(str(victim), cv2.IMREAD_UNCHANGED)
    if name == "odd_size":
        h, w = int(rng.integers(20, 300)), int(rng.integers(20, 300))
        cv2.imwrite(str(victim), cv2.resize(image, (w, h)))
        return Mutation(name, victim, f"rewritten at {w}x{h}")
    if name == "grey":
        cv2.imwrite(str(victim), cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        return Mutation(name, victim, "rewritten as a grey JPEG")
    target = victim.with_suffix(".png")
    cv2.imwrite(str(target), image)
    victim.unlink()
    return Mutation(name, target, f"{victim.name} rewritten as {target.name}")


# --- decoded cache (facerec-data verify / inspect) --------------------------------------------------


LABEL_EDITS = ("object", "float", "negative", "beyond", "short", "two_d", "int32")


def labels_rewrite(path: Path, how: str) -> Mutation:
    labels = np.load(path, allow_pickle=False)
    changed = {
        "object": lambda: np.asarray(labels.tolist(), dtype=object),
        "float": lambda: labels.astype(np.float64),
        "negative": lambda: np.where(np.arange(len(labels)) == 0, -1, labels),
        "beyond": lambda: np.where(np.arange(len(labels)) == 0, 10**6, labels),
        "short": lambda: labels[:-1],
        "two_d": lambda: labels.reshape(-1, 1),
        "int32": lambda: labels.astype(np.int32),
    }[how]()
    with path.open("wb") as f:
        np.save(f, changed, allow_pickle=how == "object")
    return Mutation("labels", path, how)


def cache(case: Path, rng) -> Mutation:
    folder = case / "pack" / "cache"
    which = mut._pick(rng, ["images.u8", "labels.npy", "labels.npy", "cache.json", "cache.json"])
    path = folder / which
    if which == "labels.npy" and rng.random() < 0.5:
        return labels_rewrite(path, mut._pick(rng, LABEL_EDITS))
    if which == "cache.json" and rng.random() < 0.6:
        name = menus._menu(rng, {"json_value": 60, "json_drop": 25, "json_reformat": 15})
        return mut.reformat_json_file(path, rng) if name == "json_reformat" else mut.mutate_json_file(path, rng, name)
    return mut.BYTE_MUTATIONS[menus._menu(rng, menus.BYTES)](path, rng)


# --- report folders (nas-report RUN) ----------------------------------------------------------------


def _numbers(doc) -> list[tuple]:
    return [p for p in mut._paths(doc) if isinstance(mut._get(doc, p), int | float)
            and not isinstance(mut._get(doc, p), bool)]


def _extreme_value(path: Path, rng, line: int | None) -> Mutation:
    text = path.read_text()
    lines = text.splitlines()
    doc = json.loads(lines[line] if line is not None else text)
    where = mut._pick(rng, _numbers(doc))
    value = mut._pick(rng, EXTREME_NUMBERS)
    mut._set(doc, where, value)
    if line is None:
        path.write_text(json.dumps(doc, indent=1))
    else:
        lines[line] = json.dumps(doc)
        path.write_text("\n".join(lines) + "\n")
    at = "" if line is None else f"line {line + 1} "
    return Mutation("extreme", path, f"{at}{mut._path_text(where)} -> {mut._short(value)}")


def report(case: Path, rng) -> Mutation:
    if rng.random() < 0.5:
        path = case / "run" / "settings.json"
        name = menus._menu(rng, {"json_value": 40, "extreme": 25, "json_drop": 12, "json_reformat": 8,
                                 **{k: 3 for k in ("truncate", "flip", "empty", "directory", "unreadable", "delete")}})
        if name == "extreme":
            return _extreme_value(path, rng, None)
        if name in mut.JSON_MUTATIONS:
            return mut.mutate_json_file(path, rng, name)
        return mut.reformat_json_file(path, rng) if name == "json_reformat" else mut.BYTE_MUTATIONS[name](path, rng)
    path = case / "run" / "journal.jsonl"
    name = menus._menu(rng, {"json_value": 35, "extreme": 30, "json_drop": 10, "json_reformat": 5,
                             "truncate": 5, "flip": 5, "delete_line": 5, "blank_line": 5})
    if name == "extreme":
        lines = path.read_text().splitlines()
        return _extreme_value(path, rng, int(rng.integers(len(lines))))
    if name in mut.JSON_MUTATIONS or name == "json_reformat":
        return mut.mutate_jsonl_line(path, rng, name)
    return {**mut.BYTE_MUTATIONS, **mut.LINE_MUTATIONS}[name](path, rng)


# --- output paths -----------------------------------------------------------------------------------

OUTPUT_NAMES = ("e.npz", "model.pt", "result.json", "report.html", "pairs.bin")


OUTPUT_SITUATIONS = ("missing_parent", "parent_file", "ancestor_file", "target_folder", "readonly", "previous_file")


def output_path(case: Path, rng) -> Mutation:
    return output_situation(case, mut._pick(rng, OUTPUT_SITUATIONS))


def output_situation(case: Path, name: str) -> Mutation:
    """``case/o/out`` is the folder every variant writes its output into (tools/fuzzing/user_kinds.py)."""
    out = case / "o" / "out"
    if name == "missing_parent":  # created on the way: the output lands as if the folder had been there
        return Mutation(name, out, "the output folder does not exist yet", harmless=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if name == "parent_file":
        out.write_text("a file where the output folder should be\n")
        return Mutation(name, out, "the output's folder is a regular file")
    if name == "ancestor_file":
        out.parent.rmdir()
        out.parent.write_text("a file above the output folder\n")
        return Mutation(name, out, "a folder above the output is a regular file")
    out.mkdir()
    if name == "target_folder":
        for target in OUTPUT_NAMES:
            (out / target).mkdir()
            (out / target / "keep.txt").write_text("a folder where the output file should go\n")
        return Mutation(name, out, "the output file's name is a folder")
    if name == "readonly":
        out.chmod(0o555)
        return Mutation(name, out, "the output folder is read-only", drop_dac=True)
    for target in OUTPUT_NAMES:
        (out / target).write_bytes(b"an earlier output\n")
    return Mutation(name, out, "an earlier output file is replaced", harmless=True)


# --- custom-named .bin packs (facerec-eval) ---------------------------------------------------------

CUSTOM_BIN = "heldout_faces.bin"


def custom_bin(case: Path, rng) -> Mutation:
    path = case / "in" / CUSTOM_BIN
    name = menus._menu(rng, {**menus.BYTES, "flip_ends": 30, "rename": 20, "clash": 6, "second": 8, "upper": 5,
                             "lfw_too": 6})
    if name in menus.BYTES:
        return mut.BYTE_MUTATIONS[name](path, rng)
    if name == "flip_ends":
        return menus._flip_near_ends(path, rng)
    if name == "rename":
        target = path.with_name(mut._pick(rng, ["held.out.v2.bin", "my pairs.bin", "ORL.bin", "a.bin", "é.bin"]))
        path.rename(target)
        return Mutation(name, target, f"renamed {target.name}")
    if name in ("clash", "upper"):
        target = path.with_name("ijbc.bin" if name == "clash" else "heldout_faces.BIN")
        path.rename(target)
        return Mutation(name, target, f"renamed {target.name}")
    copy = path.with_name("second_set.bin" if name == "second" else "lfw.bin")
    shutil.copyfile(path, copy)
    return Mutation(name, copy, f"a copy named {copy.name} added")
