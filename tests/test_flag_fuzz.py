"""The flag fuzzer (tools/fuzzing/flag_*.py): every option of every console script, read from the parser its
module builds, given the hostile values its declaration calls for (numbers 0, -1, nan, inf, 1e999, '', text;
lists '', ','; choices an unknown one; paths a FIFO, a folder, a null device, an unreadable file or folder, a
file where a folder goes, ''), and every resumable command resumed with each flag changed. A case must exit 0
with a complete result (a value that may be valid) or exit 2 with exactly one `error:` line naming the flag and
nothing written; a traceback, a hang, argparse's usage text or a half-done output is a failure.

Default run: a seeded sample of SAMPLE_PER_COMMAND cases per command (and per resumable command's resumes);
`python bench/fuzz_report.py --flags` runs all of them and bench/results/flag_fuzz.json is its last full run.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tools/ is not installed

from tools.fuzzing import flag_cases, flag_results, flag_sweep, flag_values  # noqa: E402
from tools.fuzzing.flag_cases import FlagCase  # noqa: E402
from tools.fuzzing.flag_commands import BASES, RESUMES  # noqa: E402

SAMPLE_PER_COMMAND = 2
SAMPLE_SEED = 0
RESULT = ROOT / "bench" / "results" / "flag_fuzz.json"


def test_every_command_and_subcommand_has_a_valid_base_command_line():
    commands = {option.command for option in flag_values.all_options()}
    assert commands == set(BASES), commands ^ set(BASES)
    assert set(RESUMES) <= commands


def test_every_option_has_a_role_and_each_role_its_hostile_values():
    for option in flag_values.all_options():
        assert option.role in flag_values.ROLES, option
        assert (option.role == "switch") == (not flag_values.hostile_values(option)), option
        if option.role == "choice":
            assert option.choices, option


def test_roles_follow_the_declarations():
    roles = {(o.command, o.flag): o.role for o in flag_values.all_options()}
    assert roles[("facerec-train", "--epochs")] == "int"
    assert roles[("facerec-train", "--lr")] == "float"
    assert roles[("nas-search", "--max-params")] == "number"
    assert roles[("facerec-study ranking", "--depths")] == "list"
    assert roles[("facerec-export", "--precision")] == "choice"
    assert roles[("facerec-train", "--output")] == "out_folder"
    assert roles[("facerec-eval", "--output")] == "out_file"
    assert roles[("facerec-data pack", "image_folder")] == "in_folder"
    assert roles[("facerec-verify", "a")] == "in_file"


def test_a_switch_is_named_by_either_spelling():
    case = FlagCase("facerec-train", "--no-cache", "resume-changed", "--no-cache", resume=True)
    stderr = "error: run/last.pt: expected --cache True as in the run it resumes, got False\n"
    assert flag_sweep.judge_flag_error(stderr, case, "--no-cache") is None


def test_every_resumable_command_is_resumed_with_its_flags_changed():
    resumes = [case for case in flag_cases.cases() if case.resume]
    for command in RESUMES:
        flags = {case.flag for case in resumes if case.command == command}
        assert len(flags) >= 10, (command, flags)


def _case(flag: str = "--epochs", command: str = "facerec-train") -> FlagCase:
    return FlagCase(command, flag, "nan", "nan")


@pytest.mark.parametrize("stderr, cause", [
    ("error: --epochs nan: expected a positive integer\n", None),
    ("usage: facerec-train [-h]\nfacerec-train: error: argument --epochs: invalid value\n", "argparse's usage"),
    ("error: --epochs nan: expected a positive integer\nerror: again\n", "2 lines"),
    ("Traceback (most recent call last):\nValueError\n", "traceback"),
    ("error: nan: expected a number\n", "the error names the value, not the flag"),
    ("error: expected a number\n", "the error names neither"),
    ("error: --epochs-other 3: expected a number\n", "the error names neither"),
])
def test_the_error_judge(stderr, cause):
    problem = flag_sweep.judge_flag_error(stderr, _case(), "nan")
    assert (problem is None) if cause is None else problem.startswith(cause), problem


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return flag_sweep.prepare(tmp_path_factory.mktemp("flags"))


@pytest.mark.xfail(strict=False, reason="until issue 26 validation lands")
def test_seeded_sample_has_no_failure(workspace):
    cases = flag_cases.sample(flag_cases.cases(), SAMPLE_PER_COMMAND, SAMPLE_SEED)
    assert {case.command for case in cases} == set(BASES)
    verdicts = [flag_sweep.run_case(workspace, case, index) for index, case in enumerate(cases)]
    doc = flag_results.document(verdicts, command="sample", date="", seconds=0)
    assert not doc["failures"], "\n".join(flag_results.failure_lines(doc))


def _bench():
    spec = importlib.util.spec_from_file_location("bench_fuzz_report", ROOT / "bench" / "fuzz_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_shows_the_table_the_bench_prints_from_its_json(capsys):
    assert _bench().main(["--from-json", str(RESULT)]) == 0
    printed = capsys.readouterr().out
    table = flag_results.table(json.loads(RESULT.read_text()))
    assert table in printed and table in (ROOT / "README.md").read_text()


def test_the_saved_report_holds_no_machine_path_and_its_counts_add_up():
    text = RESULT.read_text()
    for machine in ("/tmp/", "/work/", "/root/", "/home/"):
        assert machine not in text, machine
    doc = json.loads(text)
    assert doc["cases"] == sum(row["cases"] for row in doc["kinds"].values())
    assert len(doc["failures"]) == sum(row["failures"] for row in doc["kinds"].values())
    assert sum(doc["causes"].values()) == len(doc["failures"])


@pytest.mark.xfail(strict=False, reason="the saved full run predates the validation merge (flags changed); rerun "
                   "`python bench/fuzz_report.py --flags --json bench/results/flag_fuzz.json`")
def test_the_saved_report_is_of_todays_cases():
    assert json.loads(RESULT.read_text())["cases"] == len(flag_cases.cases())
