"""Every console script's parser (pyproject.toml [project.scripts]) follows the flag rules of ARCHITECTURE §7:
every option has help, ``--resume`` takes a run folder, ``--batch-size`` (no visible ``--batch``), ``--device``
defaults to auto, ``--executor`` is process or ray, every long job has ``--no-progress``; and building a parser
(what ``--help`` does) never imports torch."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
# Long jobs: None = the command and every subcommand it has; else the subcommands that are long jobs.
LONG_JOBS = {"facerec-search": None, "facerec-train": None, "facerec-study": None, "nas-search": None,
             "nas-train": None, "nas-study": None, "facerec-export": None, "facerec-eval": None,
             "facerec-data": ("pack", "cache"), "facerec-gallery": ("enroll", "identify")}


def build_parser(script: str) -> argparse.ArgumentParser:
    module = importlib.import_module(SCRIPTS[script].split(":")[0])
    assert hasattr(module, "build_parser"), f"{script}: {module.__name__} has no build_parser()"
    return module.build_parser()


def parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(subcommand path, parser) for the parser and every subcommand below it."""
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subcommands:
        yield path, parser
    for action in subcommands:
        for name, sub in action.choices.items():
            yield from parsers(sub, (*path, name))


def options(script: str):
    """(where, option string, action) for every option of the script and of its subcommands."""
    for path, parser in parsers(build_parser(script)):
        for action in parser._actions:
            for flag in action.option_strings:
                yield " ".join((script, *path)), flag, action


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_option_has_help(script):
    missing = [f"{where} {flag}" for where, flag, action in options(script)
               if not action.help and flag not in ("-h", "--help")]
    assert not missing, missing


@pytest.mark.parametrize("script", SCRIPTS)
def test_shared_flags_mean_the_same_everywhere(script):
    wrong = []
    for where, flag, action in options(script):
        if flag == "--resume" and action.nargs == 0:
            wrong.append(f"{where} --resume is a switch; expected --resume RUN_FOLDER")
        if flag == "--batch" and action.help != argparse.SUPPRESS:
            wrong.append(f"{where} shows --batch; expected --batch-size")
        if flag == "--device" and action.default != "auto":
            wrong.append(f"{where} --device defaults to {action.default!r}; expected 'auto'")
        if flag == "--executor" and set(action.choices or ()) != {"process", "ray"}:
            wrong.append(f"{where} --executor choices {action.choices}; expected process, ray")
    assert not wrong, wrong


@pytest.mark.parametrize("script", LONG_JOBS)
def test_long_jobs_have_no_progress(script):
    wanted = LONG_JOBS[script]
    checked = [(path, parser) for path, parser in parsers(build_parser(script)) if wanted is None or path[0] in wanted]
    assert checked, f"{script}: none of the subcommands {wanted}"
    lacking = [" ".join((script, *path)) for path, parser in checked
               if "--no-progress" not in parser._option_string_actions]
    assert not lacking, lacking


@pytest.mark.parametrize("script", SCRIPTS)
def test_building_the_parser_imports_no_torch(script):
    module = SCRIPTS[script].split(":")[0]
    code = (f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport {module}\n{module}.build_parser()\n"
            "heavy = sorted(m for m in ('torch', 'timm', 'numpy', 'cv2', 'onnxruntime') if m in sys.modules)\n"
            "print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", f"{script}: building the parser imported {done.stdout.strip()}"


def test_export_takes_the_old_batch_flag_hidden():
    parser = build_parser("facerec-export")
    args = parser.parse_args(["--checkpoint", "m.pt", "--output", "m.onnx", "--batch", "3"])
    assert args.batch_size == 3
    assert parser.parse_args(["--checkpoint", "m.pt", "--output", "m.onnx"]).batch_size == 8
    assert "--batch " not in parser.format_help() and "--batch-size" in parser.format_help()


def test_names_stated_for_help_match_the_registries():
    from facerec.deploy import importers, options
    from nas_core.classify.datasets import list_datasets
    from nas_core.classify.settings import DATASET_NAMES
    from nas_core.cost import ONNX_OPSET

    assert sorted(DATASET_NAMES) == sorted(list_datasets())
    assert options.MIN_OPSET == ONNX_OPSET
    help_of = {f.name: f.metadata["help"] for f in options.ImportOptions.__dataclass_fields__.values()}
    assert all(name in help_of["format"] for name in importers.list_weight_formats())
    assert ", ".join(importers.IMPORT_ARCHS) in help_of["arch"]
