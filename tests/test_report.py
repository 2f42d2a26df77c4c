"""nas-report / facerec-train reports: self-contained HTML with embedded figures and one table row per
journal line, for the ten authors' traces, a digits search, the face demo, killed and bad run folders."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest

from nas_core.cli.report import main as report_main
from nas_core.cli.search import main as search_main
from nas_core.genotype import Genotype
from nas_core.replay import load_trace
from nas_core.report import read_search_run
from nas_core.report.figures import pareto_front
from nas_core.report.run import Trial
from nas_core.search import MacroMicroSearch

TRACES = ["cifar10_64.json", "cifar10_128.json", "cifar100_64.json", "cifar100_128.json", "emnist_64.json",
          "emnist_128.json", "fashionmnist_64.json", "fashionmnist_128.json", "kmnist_64.json",
          "kmnist_128.json"]
# Every phase in 11 trials: Grow d2 -> d3, Prune 6 -> 4, micro baseline, 3 op and 3 kernel trials.
DIGITS_ARGS = ["--d-min", "2", "--d-max", "3", "--w-max", "6", "--w-min", "4", "--e-min", "1",
               "--micro-epochs", "1", "--device", "cpu"]
FIGURES = {"search_path", "fitness_params", "macro", "micro", "epochs"}
REPO = Path(__file__).resolve().parents[1]


class _Report(HTMLParser):
    """The parts of a report the tests look at: images, table rows per table id, text, external refs."""

    def __init__(self):
        super().__init__()
        self.images: dict[str, bytes] = {}
        self.rows: dict[str, int] = {}
        self.external: list[str] = []
        self.scripts = 0
        self.text: list[str] = []
        self._figure = self._table = None
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if attrs.get(key) and not attrs[key].startswith(("data:", "#")):
                self.external.append(attrs[key])
        if tag == "script":
            self.scripts += 1
        elif tag == "figure":
            self._figure = attrs.get("id", "")
        elif tag == "img":
            assert attrs["src"].startswith("data:image/png;base64,")
            self.images[self._figure] = base64.b64decode(attrs["src"].split(",", 1)[1], validate=True)
        elif tag == "table":
            self._table = attrs.get("id", "")
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows[self._table] = self.rows.get(self._table, 0) + 1

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False

    def handle_data(self, data):
        self.text.append(data)


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def parse_report(path: Path, figures: set[str]) -> _Report:
    """Parse a report and check it is self-contained and holds each figure as a real image."""
    report = _Report()
    report.feed(path.read_text())
    report.close()
    assert report.scripts == 0 and report.external == []
    assert set(report.images) == {f"fig-{name}" for name in figures}
    for name, png in report.images.items():
        width, height = _png_size(png)
        assert len(png) > 5_000 and width >= 300 and height >= 120, (name, len(png), width, height)
    report.body = " ".join(report.text)
    return report


def _journal_lines(run: Path) -> int:
    return sum(1 for line in (run / "journal.jsonl").read_text().splitlines() if line.strip())


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "digits"
    assert search_main(DIGITS_ARGS + ["--output", str(run)]) == 0
    return run


def test_digits_search_writes_its_report(digits_run):
    report = parse_report(digits_run / "report.html", FIGURES)
    assert report.rows["trials"] == _journal_lines(digits_run) == json.loads(
        (digits_run / "result.json").read_text())["trials"]
    result = Genotype.from_dict(json.loads((digits_run / "result.json").read_text()))
    assert "finished (result.json)" in report.body and result.key() in report.body
    markdown = (digits_run / "report.md").read_text()
    for name in FIGURES:
        assert f"](report-{name}.png)" in markdown
        assert (digits_run / f"report-{name}.png").stat().st_size > 5_000
    assert markdown.count("\n| ") >= _journal_lines(digits_run)


def test_decisions_are_the_searchs_own(digits_run):
    # search.log holds the decision the live search took for every trial.
    log = [line for line in (digits_run / "search.log").read_text().splitlines() if " -> " in line]
    logged = [line.rsplit(" -> ", 1)[1].split()[0] for line in log]
    run = read_search_run(digits_run)
    assert [t.decision for t in run.path] == logged
    assert {t.phase for t in run.path} == {"depth", "width", "micro_base", "ops", "kernels"}
    assert run.best().genotype == Genotype.from_dict(json.loads((digits_run / "result.json").read_text()))


def test_nas_report_cli_writes_elsewhere(digits_run, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "digits.html"
    assert report_main([str(digits_run), "--output", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    parse_report(out, FIGURES)
    assert (tmp_path / "elsewhere" / "digits.md").is_file()
    assert (tmp_path / "elsewhere" / "digits-micro.png").is_file()


def _killed_copy(run: Path, dest: Path, lines: int, torn: bool = False, strip_phase: bool = False) -> Path:
    """What a killed search leaves: settings.json and the first ``lines`` journal lines (+ a torn one)."""
    dest.mkdir(parents=True)
    shutil.copy(run / "settings.json", dest / "settings.json")
    records = (run / "journal.jsonl").read_text().splitlines()
    kept = records[:lines]
    if strip_phase:  # journals written before the phase was journaled
        kept = [json.dumps({k: v for k, v in json.loads(r).items() if k not in ("index", "phase", "layer")})
                for r in kept]
    text = "".join(r + "\n" for r in kept)
    if torn:
        text += records[lines][: len(records[lines]) // 2]
    (dest / "journal.jsonl").write_text(text)
    return dest


@pytest.mark.parametrize("torn", [False, True])
def test_killed_search_gives_a_partial_report(digits_run, tmp_path, torn):
    run = _killed_copy(digits_run, tmp_path / "killed", lines=7, torn=torn, strip_phase=torn)
    assert report_main([str(run)]) == 0
    report = parse_report(run / "report.html", FIGURES)
    assert report.rows["trials"] == 7
    assert "partial" in report.body and "best genotype so far" in report.body
    assert ("torn" in report.body) == torn
    full, partial = read_search_run(digits_run), read_search_run(run)
    assert [(t.phase, t.decision) for t in partial.path] == [(t.phase, t.decision) for t in full.path[:7]]


def _logged_trials(proc: subprocess.Popen, count: int, timeout: float = 120) -> bool:
    """Whether the search logs its ``count``-th trial line (written after the trial's journal line) within
    ``timeout`` seconds; the reader drains its stdout until the process ends."""
    reached = threading.Event()

    def read() -> None:
        trials = 0
        for line in proc.stdout:
            trials += line.startswith("trial ") and " -> " in line
            if trials >= count:
                reached.set()

    threading.Thread(target=read, daemon=True).start()
    return reached.wait(timeout)


def test_report_of_a_running_search_then_of_the_killed_one(tmp_path):
    run = tmp_path / "live"
    proc = subprocess.Popen([sys.executable, "-m", "nas_core.cli.search", *DIGITS_ARGS, "--output", str(run)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert _logged_trials(proc, 3), "the search logged no third trial"
        assert proc.poll() is None, "the search ended before its report could be written mid-run"
        # Paused, not ended: the report reads the folder of a search that is still alive (and would go on).
        proc.send_signal(signal.SIGSTOP)
        assert report_main([str(run), "--output", str(tmp_path / "live.html")]) == 0
        live = parse_report(tmp_path / "live.html", FIGURES)
        assert live.rows["trials"] >= 3 and "partial" in live.body
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (run / "result.json").exists()
    assert report_main([str(run)]) == 0
    killed = parse_report(run / "report.html", FIGURES)
    assert killed.rows["trials"] == _journal_lines(run) >= live.rows["trials"]


def test_speculative_records_are_shown_and_counted(digits_run, tmp_path):
    run = _killed_copy(digits_run, tmp_path / "spec", lines=4)
    extra = json.loads((digits_run / "journal.jsonl").read_text().splitlines()[0])
    extra.update(genotype=Genotype.uniform(9, 6).to_dict(), speculative=True, accuracy=12.5, params=4321)
    with open(run / "journal.jsonl", "a") as handle:
        handle.write(json.dumps(extra) + "\n")
    assert report_main([str(run)]) == 0
    report = parse_report(run / "report.html", FIGURES)
    assert report.rows["trials"] == 5
    assert "1 speculative" in report.body and "d9-w6-sssssssss-333333333" in report.body
    assert [t.speculative for t in read_search_run(run).lines] == [False] * 4 + [True]


@pytest.mark.parametrize("name", TRACES)
def test_report_of_an_authors_trace(seed_traces_dir, tmp_path, name):
    run = tmp_path / "replay"
    assert search_main(["--replay", str(seed_traces_dir / name), "--output", str(run)]) == 0
    raw = json.loads((seed_traces_dir / name).read_text())
    report = parse_report(run / "report.html", FIGURES)
    assert report.rows["trials"] == _journal_lines(run) == len(raw["candidates"])
    # Decisions read back from the folder are those of the search over the trace with the real space.
    settings, space, evaluator, _ = load_trace(seed_traces_dir / name)
    direct = MacroMicroSearch(space, evaluator, settings).run()
    derived = read_search_run(run)
    assert [(t.index, t.phase, t.layer, t.decision) for t in derived.path] == \
        [(t.index, t.phase, t.layer, t.decision) for t in direct.trials]
    assert [t.phase for t in derived.path] == [c["phase"] for c in raw["candidates"]]
    assert derived.best().genotype == direct.genotype
    assert direct.genotype.key() in report.body and raw["dataset"] in report.body


def _edit_first_record(run: Path, **values) -> None:
    lines = (run / "journal.jsonl").read_text().splitlines()
    lines[0] = json.dumps({**json.loads(lines[0]), **values})
    (run / "journal.jsonl").write_text("\n".join(lines) + "\n")


# Values a run folder may hold that used to reach arithmetic and plots: each is refused where it is read.
_BAD_VALUES = {
    "journal_params_400_digits": lambda run: _edit_first_record(run, params=10**400),
    "journal_accuracy_1e308": lambda run: _edit_first_record(run, accuracy=1e308),
    "settings_a_list": lambda run: (run / "settings.json").write_text("[1, 2]\n"),
    "settings_d_min_a_string": lambda run: (run / "settings.json").write_text(json.dumps(
        {**json.loads((run / "settings.json").read_text()), "search": {
            **json.loads((run / "settings.json").read_text())["search"], "d_min": "2"}})),
}


@pytest.mark.parametrize("case", ["missing", "empty", "settings_only", "bad_middle_line", "not_html",
                                  "train_out", "run_is_a_file", "output_is_a_folder", *_BAD_VALUES])
def test_bad_run_folders_exit_2_with_one_line(digits_run, tmp_path, capsys, case):
    run = tmp_path / "run"
    args = [str(run)]
    if case in (*_BAD_VALUES, "output_is_a_folder"):
        shutil.copytree(digits_run, run)
        for old in run.glob("report*"):
            old.unlink()
        _BAD_VALUES.get(case, lambda run: (run / "report.html").mkdir())(run)
    elif case == "run_is_a_file":
        run.write_text("not a folder\n")
    elif case != "missing":
        run.mkdir()
    if case in ("settings_only", "bad_middle_line", "not_html"):
        shutil.copy(digits_run / "settings.json", run / "settings.json")
    if case == "bad_middle_line":
        lines = (digits_run / "journal.jsonl").read_text().splitlines()
        (run / "journal.jsonl").write_text(lines[0] + "\n{not json\n" + lines[1] + "\n")
    if case == "not_html":
        shutil.copy(digits_run / "journal.jsonl", run / "journal.jsonl")
        args += ["--output", str(tmp_path / "report.pdf")]
    if case == "train_out":
        (run / "metrics.json").write_text("{}")
    assert report_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    if case == "run_is_a_file":
        assert "it is a file" in err[0]
        return
    assert not (run / "report.html").is_file()
    assert not list(run.glob("report*.png")) and not (run / "report.md").exists()  # nothing left half-way
    if case in _BAD_VALUES:
        assert ("settings.json" if case.startswith("settings") else "journal.jsonl:1") in err[0]


def test_journal_with_only_a_torn_line_is_a_partial_report(digits_run, tmp_path):
    run = _killed_copy(digits_run, tmp_path / "torn", lines=0, torn=True)
    assert report_main([str(run)]) == 0
    report = parse_report(run / "report.html", set())
    assert report.rows.get("trials", 0) == 0
    assert "no finished trial yet" in report.body and "torn" in report.body and "partial" in report.body


def test_pareto_front_keeps_the_undominated_trials():
    def trial(params, fitness):
        return Trial(line=0, genotype=Genotype.uniform(1, 1), epochs=1, fitness=fitness, params=params,
                     seconds=0.0, epoch_accuracies=[])

    trials = [trial(100, 50.0), trial(200, 40.0), trial(300, 60.0), trial(300, 55.0), trial(50, 10.0)]
    assert [(t.params, t.fitness) for t in pareto_front(trials)] == [(50, 10.0), (100, 50.0), (300, 60.0)]


# -- faces ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face_demo_run(tmp_path_factory) -> Path:
    """The built-in demo search at its smallest: d4-w4 (D_max = D_min, W_max = W_min: no Grow or Prune
    candidate, whatever the accuracies), then the micro baseline and one micro trial."""
    from facerec.cli.search import main as face_search_main

    run = tmp_path_factory.mktemp("face") / "demo"
    assert face_search_main(["--size", "small", "--output", str(run), "--max-trials", "3", "--e-min", "1",
                             "--micro-epochs", "1", "--w-max", "4", "--d-max", "4", "--no-progress"]) == 0
    return run


def test_face_demo_search_writes_its_report(face_demo_run):
    report = parse_report(face_demo_run / "report.html", FIGURES)
    # The micro baseline retrains d4-w4 for 1 epoch, which trial 0 already did: the search took it from
    # the journal, so 3 trials are 2 journal lines, and line 1 is trials 0 and 1.
    assert report.rows["trials"] == _journal_lines(face_demo_run) == 2
    assert "3 on the search path; 2 journal line(s)" in report.body
    assert "grow, micro baseline" in report.body and "baseline, baseline" in report.body
    result = Genotype.from_dict(json.loads((face_demo_run / "result.json").read_text()))
    assert f"R-{2 * result.depth + 2}-{8 * result.width} ({result.key()})" in report.body
    assert "built-in synthetic demo face set" in report.body
    assert json.loads((face_demo_run / "settings.json").read_text())["space"]["module"] == "facerec.model.space"


def test_killed_face_search_reports_from_its_folder(face_demo_run, tmp_path):
    run = _killed_copy(face_demo_run, tmp_path / "killed", lines=1)
    assert report_main([str(run)]) == 0
    report = parse_report(run / "report.html", FIGURES)
    assert report.rows["trials"] == 1 and "partial" in report.body
    # Named R-10-32 once facerec.report is imported (here it is: the facerec CLIs import it).
    assert "d4-w4-ssss-3333" in report.body


@pytest.fixture(scope="module")
def train_out(tiny_pack, tmp_path_factory) -> Path:
    from facerec.cli.train import main as train_main

    folder = tmp_path_factory.mktemp("train")
    genotype = folder / "result.json"
    genotype.write_text(json.dumps({"genotype": Genotype.uniform(4, 4).to_dict(),
                                    "space": {"embedding_size": 32}}))
    out = folder / "out"
    assert train_main(["--genotype", str(genotype), "--data", str(tiny_pack), "--output", str(out),
                       "--epochs", "2", "--batch-size", "8", "--lr", "0.05", "--workers", "0",
                       "--holdout-ids", "2", "--no-progress"]) == 0
    return out


def test_facerec_train_writes_its_report(train_out):
    report = parse_report(train_out / "report.html", {"training", "verification"})
    metrics = json.loads((train_out / "metrics.json").read_text())
    assert report.rows["epochs"] == len(metrics["epochs"]) == 2
    assert report.rows["checkpoint"] == len(metrics["epochs"][0]["val"]) >= 1
    assert "R-10-32 (d4-w4-ssss-3333)" in report.body
    assert metrics["selection"]["model_epoch"] == metrics["best_epoch"]
    assert (f"Final checkpoint model.pt (epoch {metrics['best_epoch']}: the best mean accuracy on pairs of 2 "
            "held-out identities (--select holdout))") in report.body
    assert (train_out / "report.md").is_file() and (train_out / "report-training.png").is_file()


def test_train_report_reads_the_tensorboard_steps(train_out):
    from facerec.report import read_step_scalars

    steps = read_step_scalars(train_out / "tb")
    assert set(steps) == {"loss", "lr", "images_per_second"}
    assert [s for s, _ in steps["loss"]] == list(range(10, json.loads(
        (train_out / "metrics.json").read_text())["global_step"] + 1, 10))


def test_facerec_report_cli_covers_train_and_search_folders(train_out, face_demo_run, tmp_path, capsys):
    from facerec.cli.report import main as face_report_main

    assert face_report_main([str(train_out), "--output", str(tmp_path / "train.html")]) == 0
    parse_report(tmp_path / "train.html", {"training", "verification"})
    assert face_report_main([str(face_demo_run), "--output", str(tmp_path / "search.html")]) == 0
    parse_report(tmp_path / "search.html", FIGURES)
    assert face_report_main([str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


# -- a real browser ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_report_renders_in_headless_chromium(digits_run, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_report", REPO / "tools" / "render_report.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    blankness, is_blank, render = tool.blankness, tool.is_blank, tool.render
    if tool.find_browser() is None:
        pytest.skip("no chromium (apt-get install -y chromium)")
    png = render(digits_run / "report.html", tmp_path / "report.png", window_size="1300,3000")
    stats = blankness(png)
    assert stats["width"] == 1300 and stats["height"] == 3000
    assert not is_blank(stats), stats
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body></body></html>")
    assert is_blank(blankness(render(empty, tmp_path / "empty.png", window_size="800,600")))
