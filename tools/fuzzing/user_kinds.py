"""The fuzzed inputs of the newer commands: published weights (facerec-import .pth / .ckpt), landmark lists,
gallery .npz files and image folders (facerec-embed), a decoded cache (facerec-data verify / inspect), report
folders (nas-report), output paths (five commands) and custom-named .bin packs (facerec-eval). Appended to
tools/fuzzing/kinds.py's KINDS; judged like every kind (tools/fuzzing/runner.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tools.fuzzing import results, user_menus
from tools.fuzzing.kinds import Kind, Variant, copy_file
from tools.fuzzing.runner import ChildResult, Step
from tools.fuzzing.subjects import Subjects

EMBED = "facerec.cli.embed:main"
REPORT_STUBS = ("nas_core.report:write_search_report",)  # nas-report draws its report: never stubbed there


def _import_steps(fmt: str, rel: str):
    return lambda s, c: [Step("facerec.cli.import_weights:main", [
        "--format", fmt, "--arch", "iresnet18", "--weights", str(c / rel), "--output", str(c / "out" / "model.pt")])]


def _embed(s: Subjects, images: Path, out: Path, *extra: str) -> list[Step]:
    return [Step(EMBED, ["--model", str(s.fast_onnx), "--images", str(images), "--output", str(out),
                         "--device", "cpu", "--batch-size", "16", *extra])]


def _copy_weights(s: Subjects, c: Path) -> None:
    (c / "in").mkdir(parents=True)
    shutil.copyfile(s.arcface_weights, c / "in" / "backbone.pth")
    shutil.copyfile(s.adaface_weights, c / "in" / "adaface_ir18.ckpt")


def _copy_landmarks(s: Subjects, c: Path) -> None:
    (c / "in").mkdir(parents=True)
    shutil.copyfile(s.ijb / "meta" / "ijbc_name_5pts_score.txt", c / "in" / "landmarks.txt")


def _copy_run(s: Subjects, c: Path) -> None:
    (c / "run").mkdir(parents=True)
    for name in ("settings.json", "journal.jsonl", "result.json"):
        shutil.copyfile(s.run / name, c / "run" / name)


def _copy_for_outputs(s: Subjects, c: Path) -> None:
    _copy_run(s, c)
    (c / "in").mkdir()
    shutil.copyfile(s.arcface_weights, c / "in" / "backbone.pth")


def _copy_custom_bin(s: Subjects, c: Path) -> None:
    (c / "in").mkdir(parents=True)
    shutil.copyfile(s.bins / "lfw.bin", c / "in" / user_menus.CUSTOM_BIN)


def _eval_steps(protocol: str):
    return lambda s, c: [Step("facerec.cli.eval:main", [
        "--model", str(s.fast_onnx), "--data", str(c / "in"), "--protocol", protocol, "--device", "cpu",
        "--batch-size", "16", "--output", str(c / "out" / "result.json")])]


# --- output paths: each variant writes one file into case/o/out, whose folder the mutation changes ------

_OUT = Path("o") / "out"


def _output_variant(label: str, name: str, steps, digest) -> Variant:
    def summary(case: Path, result: ChildResult) -> dict:
        return digest(case / _OUT / name)

    return Variant(label, lambda s, c: steps(s, c, c / _OUT / name), summary, lambda c: [c / "o"], exact=True)


_OUTPUT_VARIANTS = [
    _output_variant("embed", "e.npz", lambda s, c, out: _embed(s, s.faces, out), results.embeddings_digest),
    _output_variant("import", "model.pt", lambda s, c, out: [Step("facerec.cli.import_weights:main", [
        "--format", "arcface_torch", "--arch", "iresnet18", "--weights", str(c / "in" / "backbone.pth"),
        "--output", str(out)])], results.checkpoint_digest),
    _output_variant("eval", "result.json", lambda s, c, out: [Step("facerec.cli.eval:main", [
        "--model", str(s.fast_onnx), "--data", str(s.bins), "--protocol", "lfw", "--device", "cpu",
        "--output", str(out)])], results.eval_results),
    _output_variant("report", "report.html", lambda s, c, out: [Step("nas_core.cli.report:main", [
        str(c / "run"), "--output", str(out)])], results.report_markdown),
    _output_variant("make-bin", "pairs.bin", lambda s, c, out: [Step("facerec.cli.data:main", [
        "make-bin", str(s.faces), str(out), "--pairs", "20", "--seed", "0"])], results.bin_digest),
]


USER_KINDS: list[Kind] = [
    Kind("weights_pth", "backbone.pth (facerec-import --format arcface_torch)", _copy_weights,
         user_menus.weights("in/backbone.pth"),
         [Variant("import", _import_steps("arcface_torch", "in/backbone.pth"), results.import_summary,
                  lambda c: [c / "out"])]),
    Kind("weights_ckpt", "AdaFace .ckpt (facerec-import --format adaface)", _copy_weights,
         user_menus.weights("in/adaface_ir18.ckpt", harmless_keys=("epoch", "global_step", "state_dict/head.")),
         [Variant("import", _import_steps("adaface", "in/adaface_ir18.ckpt"), results.import_summary,
                  lambda c: [c / "out"])]),
    Kind("landmarks", "landmarks .txt (facerec-embed --landmarks)", _copy_landmarks, user_menus.landmarks,
         [Variant("embed", lambda s, c: _embed(s, s.ijb / "loose_crop", c / "out" / "e.npz", "--landmarks",
                                               str(c / "in" / "landmarks.txt")),
                  results.embed_summary, lambda c: [c / "out"])]),
    Kind("gallery", "gallery .npz (facerec-embed --gallery)", copy_file(lambda s: s.gallery, "gallery.npz"),
         user_menus.gallery,
         [Variant("embed", lambda s, c: _embed(s, s.faces, c / "out" / "e.npz", "--gallery",
                                               str(c / "in" / "gallery.npz"), "--top-k", "3"),
                  results.embed_summary, lambda c: [c / "out"])]),
    Kind("images", "image folder (facerec-embed --images)",
         lambda s, c: shutil.copytree(s.faces, c / "faces"), user_menus.images,
         [Variant("embed", lambda s, c: _embed(s, c / "faces", c / "out" / "e.npz"), results.embed_summary,
                  lambda c: [c / "out"])]),
    Kind("cache", "images.u8, labels.npy, cache.json (facerec-data verify + inspect)",
         lambda s, c: shutil.copytree(s.cached_pack, c / "pack"), user_menus.cache,
         [Variant("verify+inspect", lambda s, c: [Step("facerec.cli.data:main", ["verify", str(c / "pack")]),
                                                  Step("facerec.cli.data:main", ["inspect", str(c / "pack"), "--json"])],
                  results.cache_summary, lambda c: [c / "pack"])]),
    Kind("report", "settings.json, journal.jsonl (nas-report RUN)", _copy_run, user_menus.report,
         [Variant("report", lambda s, c: [Step("nas_core.cli.report:main", [str(c / "run"), "--output",
                                                                            str(c / "out" / "report.html")])],
                  results.report_summary(lambda c: c / "out" / "report.html"), lambda c: [c / "out"])],
         unstubbed=REPORT_STUBS),
    Kind("output_path", "--output of embed, import, eval, report, make-bin", _copy_for_outputs,
         user_menus.output_path, _OUTPUT_VARIANTS, unstubbed=REPORT_STUBS),
    Kind("custom_bin", "a .bin of any name (facerec-eval --protocol all / NAME)", _copy_custom_bin,
         user_menus.custom_bin,
         [Variant("all", _eval_steps("all"), results.named_eval_summary, lambda c: [c / "out"]),
          Variant("by name", _eval_steps("heldout_faces"), results.named_eval_summary, lambda c: [c / "out"])]),
]
