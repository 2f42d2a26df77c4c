"""Fuzzing the readers (tools/fuzzing): seeded mutations of every input kind, each run through the command
that reads it in a forked child with a deadline. A case must exit 0 with a correct, complete result, or
exit 2 with one `error:` line naming the mutated file; a traceback, a hang, another exit code or a
half-written output is a failure.

Default run: a seeded sample of FAST_CASES per kind, the hand-written cases of every crash the sweep found
(they must stay fixed), and checks that the harness itself catches each kind of failure. `-m slow` sweeps
SLOW_CASES per kind; `python bench/fuzz_report.py` prints that sweep as a table. Children are forked from
a fresh fork server, never from this process: a child forked from a long pytest session (threads and
locks left by earlier tests) can deadlock before its case runs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/ is not installed

from tools.fuzzing import known  # noqa: E402
from tools.fuzzing import sweep as fuzz  # noqa: E402
from tools.fuzzing import user_menus as umenus  # noqa: E402
from tools.fuzzing.known import KNOWN, KnownIssue, known_issue  # noqa: E402
from tools.fuzzing.mutations import Mutation, to_directory  # noqa: E402
from tools.fuzzing.runner import ChildResult, Step, Verdict, judge_error, names_target, run_child  # noqa: E402

FAST_CASES = 2
FAST_SEED = 0
SLOW_CASES = 140  # x 24 kinds = 3,360 cases
SLOW_SEED = 1


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, request):
    try:
        traces = request.getfixturevalue("seed_traces_dir")
    except pytest.skip.Exception:
        traces = None  # the trace kind is left out; every other kind runs
    return fuzz.prepare(tmp_path_factory.mktemp("fuzz"), traces)


def _unexpected(verdicts) -> list[str]:
    return [
        f"{v.kind}#{v.index} {v.mutation} -> {v.reason}"
        for v in verdicts
        if v.outcome == "failure" and known_issue(v) is None
    ]


@pytest.mark.parametrize("kind", [k.name for k in fuzz.KINDS])
def test_seeded_sample(workspace, kind):
    if kind not in {k.name for k in fuzz.active_kinds(workspace.subjects)}:
        pytest.skip(f"no subject for {kind} (the authors' traces are not present)")
    verdicts = fuzz.sweep(workspace, FAST_CASES, seed=FAST_SEED, kinds=[kind])
    assert len(verdicts) == FAST_CASES
    assert not _unexpected(verdicts), "\n".join(_unexpected(verdicts))


@pytest.mark.slow
def test_slow_sweep_has_no_unknown_failure(workspace):
    verdicts = fuzz.sweep(workspace, SLOW_CASES, seed=SLOW_SEED)
    print(fuzz.format_table(fuzz.table(verdicts)))
    assert len(verdicts) >= 3000 or len(fuzz.active_kinds(workspace.subjects)) < len(fuzz.KINDS)
    assert not _unexpected(verdicts), "\n".join(_unexpected(verdicts))


# --- every crash the sweep found, written out: each must stay an exit 2 naming the file -------------------


def _write(rel: str, data: bytes):
    def mutate(case: Path) -> Mutation:
        (case / rel).write_bytes(data)
        return Mutation("write", case / rel, repr(data[:40]))

    return mutate


def _edit_text(rel: str, old: str, new: str):
    def mutate(case: Path) -> Mutation:
        path = case / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, 1))
        return Mutation("edit", path, f"{old!r} -> {new!r}")

    return mutate


def _edit_line(rel: str, number: int, edit):
    def mutate(case: Path) -> Mutation:
        path = case / rel
        lines = path.read_text().splitlines()
        lines[number] = edit(lines[number])
        path.write_text("\n".join(lines) + "\n")
        return Mutation("edit_line", path, f"line {number + 1}")

    return mutate


def _unreadable(rel: str):
    def mutate(case: Path) -> Mutation:
        (case / rel).chmod(0)
        return Mutation("unreadable", case / rel, "chmod 000", drop_dac=True)

    return mutate


def _edit_checkpoint(rel: str, edit):
    def mutate(case: Path) -> Mutation:
        import torch

        ckpt = torch.load(case / rel, weights_only=True)
        edit(ckpt)
        torch.save(ckpt, case / rel)
        return Mutation("edit_checkpoint", case / rel, "edited")

    return mutate


def _set_json(rel: str, edit):
    def mutate(case: Path) -> Mutation:
        path = case / rel
        if path.suffix == ".jsonl":
            lines = path.read_text().splitlines()
            record = json.loads(lines[0])
            edit(record)
            lines[0] = json.dumps(record)
            path.write_text("\n".join(lines) + "\n")
        else:
            doc = json.loads(path.read_text())
            edit(doc)
            path.write_text(json.dumps(doc))
        return Mutation("edit_json", path, "edited")

    return mutate


def _zero_bytes(rel: str, start: int, end: int):
    def mutate(case: Path) -> Mutation:
        data = bytearray((case / rel).read_bytes())
        data[start:end] = bytes(end - start)
        (case / rel).write_bytes(bytes(data))
        return Mutation("zero", case / rel, f"bytes {start}..{end} zeroed")

    return mutate


def _landmark(line: str, field: int, value: str) -> str:
    fields = line.split()
    fields[field] = value
    return " ".join(fields)


def _edit_weights(rel: str, key: str, how: str):
    def mutate(case: Path) -> Mutation:
        import torch

        state = torch.load(case / rel, weights_only=True)
        state[key] = state[key].float().to_sparse() if how == "sparse" else state[key].to(torch.int32)
        torch.save(state, case / rel)
        return Mutation("edit_weights", case / rel, f"{key}: {how}")

    return mutate


def _inf_weight(ckpt):
    import torch

    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.ndim == 1)
    ckpt["model"][name] = torch.full_like(ckpt["model"][name], float("inf"))


def _bad_running_mean(ckpt):
    import torch

    name = next(k for k in ckpt["model"] if k.endswith("running_mean"))
    ckpt["model"][name] = torch.zeros(*ckpt["model"][name].shape, 2)


SCENARIOS = {
    # name: (kind, variant or None, mutate)
    "property not UTF-8": ("property", None, _write("pack/property", b"6,11\xf0\x9f2,112\n")),
    "property size not the images'": ("property", None, _write("pack/property", b"6,112,1\n")),
    "idx two keys one offset": (
        "idx",
        "verify+inspect",
        _edit_line("pack/train.idx", 24, lambda line: "24\t0"),
    ),
    "idx empty": ("idx", "verify+inspect", _write("pack/train.idx", b"")),
    "idx key beyond the layout": (
        "idx",
        "verify+inspect",
        _edit_line("pack/train.idx", 23, lambda line: "99999999999999999999999\t" + line.split("\t")[1]),
    ),
    "rec empty, index rebuilt": ("rec", "index", _write("pack/train.rec", b"")),
    "landmark NaN": (
        "ijb_5pts",
        None,
        _edit_line(
            "IJBC/meta/ijbc_name_5pts_score.txt",
            3,
            lambda line: " ".join([*line.split()[:2], "nan", *line.split()[3:]]),
        ),
    ),
    "1:N gallery subject changed": (
        "ijb_1n",
        None,
        _edit_line("IJBC/meta/ijbc_1N_gallery_G1.csv", 1, lambda line: line.replace(",", ",-", 1)),
    ),
    "tid_mid unreadable": ("ijb_tid_mid", None, _unreadable("IJBC/meta/ijbc_face_tid_mid.txt")),
    "distractors unreadable": (
        "tinyface",
        None,
        _unreadable("tinyface/aligned_pad_0.1_pad_high/Gallery_Distractor"),
    ),
    "genotype not UTF-8": ("genotype", None, _write("in/result.json", b'{"genotype": \xba}')),
    "genotype width 10**12": (
        "genotype",
        None,
        _set_json("in/result.json", lambda d: d["genotype"].update(width=10**12)),
    ),
    "model.pt inf weights": ("model_pt", None, _edit_checkpoint("in/model.pt", _inf_weight)),
    "model.pt embedding size -1": (
        "model_pt",
        None,
        _edit_checkpoint("in/model.pt", lambda c: c["space"].update(embedding_size=-1)),
    ),
    "model.pt width 10**12": (
        "model_pt",
        None,
        _edit_checkpoint("in/model.pt", lambda c: c["genotype"].update(width=10**12)),
    ),
    "last.pt genotype op a dict": (
        "last_pt",
        None,
        _edit_checkpoint("train/last.pt", lambda c: c["genotype"]["ops"].__setitem__(2, {"a": 1})),
    ),
    "last.pt running mean shape": ("last_pt", None, _edit_checkpoint("train/last.pt", _bad_running_mean)),
    "last.pt optimizer state a list": (
        "last_pt",
        "resume",
        _edit_checkpoint("train/last.pt", lambda c: c["optimizer"]["state"].update(
            {key: [] for key in list(c["optimizer"]["state"])[:1]})),
    ),
    "journal epochs an object": (
        "journal",
        "resume",
        _set_json("run/journal.jsonl", lambda r: r.update(epochs={"a": 1})),
    ),
    "journal truncated, replayed": ("journal", "replay", _edit_text("run/journal.jsonl", "}\n{", "}\n")),
    "journal a directory": (
        "journal",
        "resume",
        lambda case: to_directory(case / "run" / "journal.jsonl", None),
    ),
    "trace accuracy a string": (
        "trace",
        None,
        _set_json("in/trace.json", lambda d: d["candidates"][0].update(test_acc="x")),
    ),
    # Issue 17: each class of input that ran into arithmetic, a torch internal or the file system unchecked.
    "trace params an integer of 400 digits": (
        "trace",
        None,
        _set_json("in/trace.json", lambda d: d["candidates"][0].update(params=10**400)),
    ),
    "resume with settings d_min a string": (
        "journal",
        "resume",
        _set_json("run/settings.json", lambda d: d["search"].update(d_min="2")),
    ),
    "report journal params an integer of 400 digits": (
        "report",
        None,
        _set_json("run/journal.jsonl", lambda r: r.update(params=10**400)),
    ),
    "report journal accuracy 1e308": ("report", None, _set_json("run/journal.jsonl", lambda r: r.update(accuracy=1e308))),
    "report settings a list": ("report", None, _write("run/settings.json", b"[1, 2]\n")),
    "landmark at 1e30": ("landmarks", None, _edit_line("in/landmarks.txt", 2, lambda line: _landmark(line, 3, "1e30"))),
    "landmark 3000 px off the image": (
        "landmarks",
        None,
        _edit_line("in/landmarks.txt", 2, lambda line: _landmark(line, 1, "-3000")),
    ),
    "weights a sparse tensor": ("weights_pth", None, _edit_weights("in/backbone.pth", "fc.weight", "sparse")),
    "weights an int32 tensor": ("weights_pth", None, _edit_weights("in/backbone.pth", "bn1.weight", "int32")),
    "weights a pickle that runs code": (
        "weights_ckpt",
        None,
        lambda case: umenus._weights_special(case / "in" / "adaface_ir18.ckpt", None, "pickle_code"),
    ),
    "output folder a file (import)": ("output_path", "import", lambda case: umenus.output_situation(case, "parent_file")),
    "report output a folder": ("output_path", "report", lambda case: umenus.output_situation(case, "target_folder")),
    "cache labels an object array": ("cache", None, lambda case: umenus.labels_rewrite(case / "pack" / "cache" / "labels.npy", "object")),
    "cache labels header zeroed": ("cache", None, _zero_bytes("pack/cache/labels.npy", 39, 88)),  # tokenize.TokenError
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_found_crash_stays_fixed(workspace, name):
    kind, variant, mutate = SCENARIOS[name]
    if kind not in {k.name for k in fuzz.active_kinds(workspace.subjects)}:
        pytest.skip(f"no subject for {kind}")
    verdict = fuzz.run_scenario(workspace, kind, mutate, variant)
    assert verdict.outcome == "exit2", f"{verdict.mutation} -> {verdict.outcome}: {verdict.reason}"


# --- the harness catches what it exists to catch --------------------------------------------------------


def _sleeps(argv: list[str]) -> int:
    time.sleep(float(argv[0]))
    return 0


def _raises(argv: list[str]) -> int:
    raise KeyError(argv[0])


def _returns(argv: list[str]) -> int:
    print(argv[1], file=sys.stderr)
    return int(argv[0])


def _convolves(argv: list[str]) -> int:
    import numpy as np
    import torch

    torch.nn.Conv2d(3, 16, 3)(torch.randn(8, 3, 112, 112)).sum().item()
    cv2 = __import__("cv2")
    cv2.resize(np.random.rand(1000, 1000, 3).astype(np.float32), (500, 500))
    return 0


def _child(target: str, argv: list[str], tmp_path: Path, timeout: float = 20) -> ChildResult:
    return run_child([Step(f"{__name__}:{target}", argv)], tmp_path / "_harness", timeout=timeout)


def test_harness_reports_hangs_exceptions_and_bad_exit_codes(tmp_path):
    hang = _child("_sleeps", ["30"], tmp_path, timeout=1)
    assert hang.timed_out and fuzz.failure_of(hang).startswith("hang")
    crash = _child("_raises", ["boom"], tmp_path)
    assert crash.exception and "KeyError: 'boom'" in fuzz.failure_of(crash)
    odd = _child("_returns", ["1", "error: x"], tmp_path)
    assert fuzz.failure_of(odd) == "exit code 1 (expected 0 or 2)"
    clean = _child("_returns", ["2", f"error: {tmp_path}/in/lfw.bin: expected a pack"], tmp_path)
    assert fuzz.failure_of(clean) is None
    assert judge_error(clean, tmp_path / "in" / "lfw.bin", tmp_path) is None


def test_children_run_after_the_parent_used_thread_pools(tmp_path):
    # The rest of a pytest session runs torch and OpenCV in this process before the fuzz cases fork.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _convolves([])
        result = _child("_convolves", [], tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert fuzz.failure_of(result) is None and result.rc == 0


def test_error_line_must_name_the_mutated_file(tmp_path):
    target = tmp_path / "pack" / "train.idx"
    assert names_target(f"error: {target}: line 3: expected 'key<TAB>offset'", target, tmp_path)
    assert names_target(f"error: {tmp_path / 'pack'}: expected a face pack", target, tmp_path)
    assert names_target(
        f"error: {tmp_path / 'pack' / 'train.rec'}: key 4 (offset from train.idx): bad", target, tmp_path
    )
    assert not names_target(
        f"error: {tmp_path / 'pack' / 'train.rec'}: offset 40: bad magic", target, tmp_path
    )
    assert not names_target("error: genotype: expected depth to be a positive integer", target, tmp_path)
    two = ChildResult(2, None, "", "error: a\nerror: b\n")
    assert judge_error(two, target, tmp_path) == "2 'error:' lines on stderr (expected 1)"
    # The error line must be alone: a progress bar's residue or a library's warning before it fails the case.
    for before in ("embedding:  40%|####      | 2/5 [00:01<00:01]\r", "UserWarning: Detected pickle protocol 4\n"):
        noisy = ChildResult(2, None, "", f"{before}error: {target}: expected 'key<TAB>offset'\n")
        assert judge_error(noisy, target, tmp_path).startswith("2 lines on stderr, expected the error line alone")


def _failure(kind: str, trace: str, outcome: str = "failure") -> Verdict:
    return Verdict(kind, 0, outcome, "exception", "mutation", 0.0, {"exception": trace})


def test_a_known_issue_lets_through_only_its_own_failures(monkeypatch):
    frame = 'File "/repo/facerec/train/state.py", line 120, in load_state'
    issue = KnownIssue("last_pt", (frame,), "facerec/train/state.py load_state", "an optimizer entry not a mapping")
    monkeypatch.setattr(known, "KNOWN", [issue])
    ours = _failure("last_pt", f"Traceback:\n  {frame}\nKeyError: 'state'")
    elsewhere = _failure("last_pt", 'Traceback:\n  File "/repo/facerec/train/loop.py", line 9\nKeyError: 1')
    assert known_issue(ours) is issue
    assert known_issue(_failure("model_pt", ours.detail["exception"])) is None  # another kind
    assert known_issue(elsewhere) is None  # another frame
    assert known_issue(_failure("last_pt", ours.detail["exception"], outcome="exit2")) is None  # not a failure
    assert _unexpected([ours, elsewhere]) == ["last_pt#0 mutation -> exception"]
    kinds = {k.name for k in fuzz.KINDS}
    assert all(entry.kind in kinds and entry.where and entry.what for entry in KNOWN)  # the real list's entries
