"""What a correct exit-0 result looks like for each command the fuzz runs: complete files, values in
range (the JSON contracts of ARCHITECTURE §7), finite features. Each ``*_summary(case, result)`` returns
what the run computed, for comparing with the unmutated run, or raises ``Invalid``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tools.fuzzing.runner import ChildResult, Invalid

FARS = ("1e-06", "1e-05", "0.0001", "0.001", "0.01", "0.1")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise Invalid(f"exit 0 but {path.name} was not written")
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise Invalid(f"{path.name}: not a JSON object")
    return data


def _fraction(value, what: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        raise Invalid(f"{what}: expected a fraction in [0, 1], got {value!r}")
    return float(value)


def _count(value, what: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise Invalid(f"{what}: expected an integer >= {minimum}, got {value!r}")
    return value


def _ranks(result: dict, ranks: tuple[int, ...], what: str) -> None:
    values = [_fraction(result.get(f"rank{k}"), f"{what} rank{k}") for k in ranks]
    if values != sorted(values):
        raise Invalid(f"{what}: rank-k must not decrease with k: {values}")
    _count(result.get("probes"), f"{what} probes")
    _count(result.get("gallery"), f"{what} gallery")


def _check_verification(r: dict) -> None:
    _fraction(r.get("accuracy"), "accuracy")
    _fraction(r.get("std"), "std")
    if not isinstance(r.get("threshold"), float) or not 0 <= r["threshold"] <= 4:
        raise Invalid(f"threshold: expected a float in [0, 4], got {r.get('threshold')!r}")
    _count(r.get("pairs"), "pairs", minimum=10)
    folds = r.get("fold_accuracies")
    if not isinstance(folds, list) or len(folds) != 10:
        raise Invalid("fold_accuracies: expected 10 values")
    for value in folds:
        _fraction(value, "fold accuracy")


def _check_ijb(r: dict) -> None:
    table = r.get("tar_at_far")
    if not isinstance(table, dict) or list(table) != list(FARS):
        raise Invalid(f"tar_at_far: expected keys {FARS}")
    for far, value in table.items():
        _fraction(value, f"TAR@FAR={far}")
    _fraction(r.get("auc"), "auc")
    _count(r.get("templates"), "templates")
    _count(r.get("pairs"), "pairs")
    if "identification" in r:
        _ranks(r["identification"], (1, 5, 10), "1:N")


def _check_tinyface(r: dict) -> None:
    _ranks(r, (1, 5, 20), "TinyFace")


_CHECKS = {"lfw": _check_verification, "ijbc": _check_ijb, "tinyface": _check_tinyface}


def pack_summary(case: Path, result: ChildResult) -> dict:
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if len(lines) != 2 or not lines[0].startswith("ok: "):
        raise Invalid(f"expected verify's 'ok:' line and inspect's JSON on stdout, got {lines[:3]}")
    info = json.loads(lines[1])
    info.pop("path", None)
    if isinstance(info.get("cache"), dict):  # the decoded cache's folder names the case's pack: compare it as PACK
        info["cache"]["path"] = str(info["cache"].get("path", "")).replace(str(case / "pack"), "PACK")
    if sum(info["counts"]) != info["images"] or len(info["counts"]) != info["identities"]:
        raise Invalid(f"inspect: counts {info['counts']} do not add up to {info['images']} images")
    return {"verify": lines[0].replace(str(case / "pack"), "PACK"), "inspect": info}


def unpack_summary(case: Path, result: ChildResult) -> dict:
    folder = case / "out" / "faces"
    if not folder.is_dir():
        raise Invalid("exit 0 but the unpacked folder was not written")
    counts = {}
    for identity in sorted(folder.iterdir()):
        files = sorted(identity.iterdir())
        if not files or any(f.stat().st_size == 0 for f in files):
            raise Invalid(f"unpack: {identity.name} holds no images or an empty file")
        counts[identity.name] = [f.name for f in files]
    return counts


def index_summary(case: Path, result: ChildResult) -> dict:
    idx = case / "out" / "train.idx"
    if not idx.is_file():
        raise Invalid("exit 0 but the rebuilt .idx was not written")
    lines = idx.read_text().splitlines()
    keys = [int(line.split("\t")[0]) for line in lines]
    if keys != list(range(len(lines))):
        raise Invalid("rebuilt .idx: expected keys 0, 1, ... in order")
    return {"idx": lines}


def train_summary(out: Callable[[Path], Path]) -> Callable[[Path, ChildResult], dict]:
    def summary(case: Path, result: ChildResult) -> dict:
        import torch

        metrics = _read_json(out(case) / "metrics.json")
        model = out(case) / "model.pt"
        if not model.is_file():
            raise Invalid("exit 0 but model.pt was not written")
        ckpt = torch.load(model, map_location="cpu", weights_only=True)
        if ckpt.get("genotype") != metrics.get("genotype"):
            raise Invalid("model.pt and metrics.json disagree on the genotype")
        epochs = metrics.get("epochs")
        if not isinstance(epochs, list) or not epochs:
            raise Invalid("metrics.json: expected one entry per epoch")
        return {
            "genotype": metrics["genotype"],
            "params": metrics["run"]["params"],
            "epochs": len(epochs),
            "step": metrics["global_step"],
        }

    return summary


def search_summary(result_path: Callable[[Path], Path]) -> Callable[[Path, ChildResult], dict]:
    def summary(case: Path, result: ChildResult) -> dict:
        from nas_core.genotype import Genotype

        data = _read_json(result_path(case))
        Genotype.from_dict(data.get("genotype"))
        if not isinstance(data.get("params"), int) or not isinstance(data.get("trials"), int):
            raise Invalid("result.json: expected integer params and trials")
        accuracy = data.get("fitness")
        if not isinstance(accuracy, int | float) or not math.isfinite(accuracy):
            raise Invalid(f"result.json: expected a finite fitness, got {accuracy!r}")
        return {
            "genotype": data["genotype"],
            "params": data["params"],
            "trials": data["trials"],
            "fitness": accuracy,
        }

    return summary


def eval_summary(protocol: str) -> Callable[[Path, ChildResult], dict]:
    """facerec-eval's result for ``protocol`` (the JSON contract of ARCHITECTURE §7) and finite features."""

    def summary(case: Path, result: ChildResult) -> dict:
        report = _read_json(case / "out" / "result.json")
        if report.get("protocol") != protocol or not isinstance(report.get("results"), dict):
            raise Invalid("result.json: expected 'protocol' and 'results' (ARCHITECTURE §7)")
        r = report["results"].get(protocol)
        if not isinstance(r, dict):
            raise Invalid(f"result.json: no results for {protocol}")
        _CHECKS[protocol](r)
        features = case / "out" / "features.npz"
        if not features.is_file():
            raise Invalid("exit 0 but features.npz was not written")
        with np.load(features, allow_pickle=False) as saved:
            for key in saved.files:
                values = saved[key]
                if values.dtype.kind == "f" and not np.isfinite(values).all():
                    raise Invalid(
                        f"features.npz: {key} holds non-finite values (exit 0 on a broken model or input)"
                    )
        return r

    return summary


# --- the newer commands (tools/fuzzing/user_kinds.py) ------------------------------------------------


def _digest(*arrays) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def checkpoint_digest(path: Path) -> dict:
    """A facenas checkpoint written by facerec-import: rebuildable keys, finite weights, and their digest."""
    import torch

    if not path.is_file():
        raise Invalid(f"exit 0 but {path.name} was not written")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict) or not ckpt.get("arch"):
        raise Invalid(f"{path.name}: expected a facenas checkpoint with 'model' and 'arch'")
    state = ckpt["model"]
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise Invalid(f"{path.name}: {key} holds NaN or inf (exit 0 on broken weights)")
    return {"arch": ckpt["arch"], "weights": _digest(*(state[k].numpy() for k in sorted(state)))}


def import_summary(case: Path, result: ChildResult) -> dict:
    return checkpoint_digest(case / "out" / "model.pt")


def embeddings_digest(path: Path) -> dict:
    """An embeddings .npz of facerec-embed: one name per row, finite unit rows; names and a digest."""
    if not path.is_file():
        raise Invalid(f"exit 0 but {path.name} was not written")
    with np.load(path, allow_pickle=False) as data:
        names, emb = data["names"], data["embeddings"]
    if emb.ndim != 2 or len(names) != len(emb) or not len(emb) or not np.isfinite(emb).all():
        raise Invalid(f"{path.name}: expected one finite embedding row per name")
    if not np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-3):
        raise Invalid(f"{path.name}: embeddings are not L2-normalised")
    return {"names": names.tolist(), "embeddings": _digest(emb)}


def embed_summary(case: Path, result: ChildResult) -> dict:
    summary = embeddings_digest(case / "out" / "e.npz")
    nearest = [line for line in result.stdout.splitlines() if line.strip()]
    for line in nearest:
        for score in line.split("\t")[1:]:
            value = float(score.rsplit(" ", 1)[1]) if " " in score else math.nan
            if not -1.001 <= value <= 1.001:
                raise Invalid(f"a gallery cosine outside [-1, 1]: {line[:120]!r}")
    return {**summary, "nearest": nearest}


def cache_summary(case: Path, result: ChildResult) -> dict:
    """verify then inspect of a pack with a decoded cache: inspect calls the cache complete exactly when
    verify opened it and found every row equal to its image."""
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if len(lines) != 2 or not lines[0].startswith("ok: "):
        raise Invalid(f"expected verify's 'ok:' line and inspect's JSON on stdout, got {lines[:3]}")
    state = json.loads(lines[1])["cache"]["state"]
    verified = lines[0].endswith("decoded cache: matches every image")
    if (state == "complete") != verified:
        raise Invalid(f"inspect says the cache is {state!r} but verify says {lines[0].rsplit(': ', 1)[-1]!r}")
    return {"verify": lines[0].replace(str(case / "pack"), "PACK"), "state": state}


def report_summary(html: Callable[[Path], Path]) -> Callable[[Path, ChildResult], dict]:
    def summary(case: Path, result: ChildResult) -> dict:
        path = html(case)
        if not path.is_file() or not path.with_suffix(".md").is_file():
            raise Invalid("exit 0 but report.html or its markdown twin was not written")
        text = path.with_suffix(".md").read_text()
        if "nan" in text.lower().split() or "inf" in text.lower().split():
            raise Invalid("the report shows NaN or inf")
        return {"md": text.replace(str(case), "CASE")}

    return summary


def named_eval_summary(case: Path, result: ChildResult) -> dict:
    """facerec-eval over custom-named packs: every result a verification result (ARCHITECTURE §7)."""
    report = _read_json(case / "out" / "result.json")
    results = report.get("results")
    if not isinstance(results, dict) or not results:
        raise Invalid("result.json: expected results")
    for r in results.values():
        _check_verification(r)
    return {name: results[name] for name in sorted(results)}


def bin_digest(path: Path) -> dict:
    from eval_protocols.bins import read_bin

    if not path.is_file():
        raise Invalid(f"exit 0 but {path.name} was not written")
    encoded, issame = read_bin(path)
    return {"pairs": len(issame), "same": int(issame.sum()), "bytes": _digest(np.frombuffer(b"".join(encoded), np.uint8))}


def eval_results(path: Path) -> dict:
    results = _read_json(path).get("results")
    if not isinstance(results, dict) or not results:
        raise Invalid(f"{path.name}: expected results")
    return results


def report_markdown(path: Path) -> dict:
    """The markdown twin of a report written to CASE/o/out/NAME.html, with the case folder named CASE."""
    if not path.is_file() or not path.with_suffix(".md").is_file():
        raise Invalid("exit 0 but the report or its markdown twin was not written")
    return {"md": path.with_suffix(".md").read_text().replace(str(path.parents[2]), "CASE")}
