"""Honest by default: beside .bin benchmark packs, facerec-search ranks and facerec-train selects model.pt on
identities held out of the training pack; on the packs only when asked (--val-bins, --select bins), and
result.json / metrics.json say which. The packs are otherwise scored as a report only."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from facerec.cli.search import main as search_main
from facerec.cli.train import main as train_main
from facerec.data.demo import demo_pack
from facerec.data.run_data import prepare_data
from facerec.errors import FaceRecError
from facerec.train.validation import REPORT_SHARE, VerificationSet, load_bin_sets, report_cadence, verify
from nas_core.genotype import Genotype

_TOOLS = Path(__file__).resolve().parents[1] / "tools" / "make_fixtures.py"
_BINS = ("cfp_fp", "lfw")
_SEARCH = ["--e-min", "1", "--d-min", "4", "--d-max", "5", "--w-min", "4", "--w-max", "4", "--max-trials", "1",
           "--batch-size", "8", "--workers", "0", "--embedding-size", "16", "--no-progress"]
_TRAIN = ["--batch-size", "8", "--lr", "0.05", "--workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    """6 synthetic identities x 6 images as a RecordIO pack, with lfw.bin and cfp_fp.bin beside it (the layout
    of faces_webface_112x112/)."""
    spec = importlib.util.spec_from_file_location("make_fixtures", _TOOLS)
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    root = demo_pack(tmp_path_factory.mktemp("pack"), num_identities=6, images_per_identity=6)
    rng = np.random.default_rng(0)
    for name in _BINS:
        fixtures.make_verification_pack(root / f"{name}.bin", rng, pairs=20, identities=5)
    return root


@pytest.fixture(scope="module")
def genotype(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("genotype") / "result.json"
    path.write_text(json.dumps({"genotype": Genotype.uniform(4, 4).to_dict(), "space": {"embedding_size": 16}}))
    return path


def test_prepare_data_holds_identities_out_beside_bin_packs_and_loads_the_packs_only_when_asked(pack, tmp_path):
    default = prepare_data(pack, tmp_path, need_val=False)
    assert [vs.name for vs in default.val_sets] == ["holdout"] and default.report_sets == []
    assert default.info["fitness_on"]["kind"] == "holdout" and len(default.info["holdout_identities"]) == 2
    assert default.info["train_identities"] == 4

    bins = prepare_data(pack, tmp_path, fitness="bins", need_val=False)
    assert sorted(vs.name for vs in bins.val_sets) == list(_BINS) and bins.info["fitness_on"]["kind"] == "bins"
    assert bins.info["train_identities"] == 6  # nothing held out: the fitness is on the packs

    one = prepare_data(pack, tmp_path, fitness="bins", val_bins=["lfw"], need_val=False)
    assert [vs.name for vs in one.val_sets] == ["lfw"]

    report = prepare_data(pack, tmp_path, report_bins=True, need_val=False)
    assert [vs.name for vs in report.val_sets] == ["holdout"]
    assert sorted(vs.name for vs in report.report_sets) == list(_BINS)

    with pytest.raises(FaceRecError, match="--holdout-ids: expected none"):
        prepare_data(pack, tmp_path, fitness="bins", holdout_ids=2)


def test_report_cadence_keeps_the_benchmarks_to_their_share_of_training():
    def sets(images: int) -> list[VerificationSet]:
        return [VerificationSet("b", np.zeros((images, 1, 1, 3), np.uint8), np.zeros(images // 2, bool))]

    assert report_cadence([], 1000) == 0
    for images, train, world in ((62_000, 441_550, 1), (62_000, 441_550, 8), (80, 24, 1), (10, 10**6, 1)):
        every = report_cadence(sets(images), train, world)
        # the smallest whole number of epochs over which one scoring is at most REPORT_SHARE of the training
        assert every * REPORT_SHARE * train >= images * world
        assert every == 1 or (every - 1) * REPORT_SHARE * train < images * world
    assert report_cadence(sets(62_000), 441_550, 8) > report_cadence(sets(62_000), 441_550, 1)


def _journal_sets(run: Path) -> set[str]:
    return {name for line in (run / "journal.jsonl").read_text().splitlines()
            for name in json.loads(line)["extra"]["val"]}


def test_search_ranks_on_held_out_identities_by_default_and_on_the_packs_only_when_asked(pack, tmp_path):
    default, asked = tmp_path / "default", tmp_path / "asked"
    assert search_main(["--data", str(pack), "--output", str(default), *_SEARCH]) == 0
    assert search_main(["--data", str(pack), "--output", str(asked), "--val-bins", "lfw,cfp_fp", *_SEARCH]) == 0

    result = json.loads((default / "result.json").read_text())
    assert result["fitness_on"]["kind"] == "holdout" and list(result["fitness_on"]["sets"]) == ["holdout"]
    assert result["fitness_on"]["identities"] == 2 and result["data"]["train_identities"] == 4
    assert _journal_sets(default) == {"holdout"}  # the trials were scored on nothing else
    assert "fitness = 10-fold accuracy on pairs of 2 identities held out" in (default / "search.log").read_text()
    assert "fitness measured on | pairs of 2 identities held out" in (default / "report.md").read_text()

    result = json.loads((asked / "result.json").read_text())
    assert result["fitness_on"]["kind"] == "bins" and set(result["fitness_on"]["sets"]) == set(_BINS)
    assert result["data"]["train_identities"] == 6
    assert _journal_sets(asked) == set(_BINS)
    assert "the benchmark .bin packs asked for with --val-bins" in (asked / "search.log").read_text()


def test_search_refuses_both_fitnesses(pack, tmp_path, capsys):
    run = tmp_path / "both"
    rc = search_main(["--data", str(pack), "--output", str(run), "--val-bins", "lfw", "--holdout-ids", "2",
                      *_SEARCH])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: --holdout-ids: expected none when the fitness is on .bin packs")
    assert not (run / "journal.jsonl").exists()


def test_train_selects_on_held_out_identities_and_scores_the_packs_as_a_report(pack, genotype, tmp_path):
    from facerec.model.checkpoint import load_backbone

    out = tmp_path / "default"
    assert train_main(["--genotype", str(genotype), "--data", str(pack), "--output", str(out), "--epochs", "2",
                       *_TRAIN]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    selection = metrics["selection"]
    assert selection["select"] == "holdout" and selection["on"]["kind"] == "holdout"
    assert selection["model_epoch"] == metrics["best_epoch"]
    assert all(list(e["val"]) == ["holdout"] for e in metrics["epochs"])
    # 24 training images against 2 x 40 benchmark images: scored only after the last epoch, never chosen on
    assert metrics["run"]["report_every"] > 2
    assert ["benchmarks" in e for e in metrics["epochs"]] == [False, True]
    model, ckpt = load_backbone(out / "model.pt")
    assert ckpt["epoch"] == selection["model_epoch"]
    reported = metrics["model_benchmarks"]
    assert reported["epoch"] == selection["model_epoch"] and set(reported["results"]) == set(_BINS)
    rescored = verify(model, load_bin_sets(sorted(pack.glob("*.bin"))), "cpu")
    for name in _BINS:  # the report is model.pt's, whichever epoch that is
        assert math.isclose(rescored[name]["accuracy"], reported["results"][name]["accuracy"])
    log = (out / "train.log").read_text()
    assert "--select holdout: model.pt is the epoch with the best mean 10-fold accuracy on pairs of 2" in log
    assert "a report only, never a choice" in log and "on the benchmark packs, a report not a choice" in log
    report = (out / "report.md").read_text()
    assert "(--select holdout)" in report and "lfw (report only)" in report


def test_train_selects_on_the_packs_only_when_asked_and_resumes_a_run_from_before_select(pack, genotype, tmp_path):
    out = tmp_path / "bins"
    args = ["--genotype", str(genotype), "--data", str(pack), "--output", str(out), "--epochs", "1",
            "--val-bins", "lfw", *_TRAIN]
    assert train_main([*args, "--select", "bins"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selection"]["select"] == "bins" and metrics["selection"]["on"]["kind"] == "bins"
    assert list(metrics["epochs"][0]["val"]) == ["lfw"] and "benchmarks" not in metrics["epochs"][0]
    assert metrics["run"]["train_identities"] == 6

    # A last.pt without --select in its flags was started when .bin packs beside the pack meant no held-out
    # identities (and selection on the packs): its resume keeps them, or the classes would change (exit 2).
    ckpt = torch.load(out / "last.pt", weights_only=True)
    del ckpt["config"]["flags"]["--select"]
    torch.save(ckpt, out / "last.pt")
    assert train_main([*args, "--resume", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["train_identities"] == 6 and metrics["selection"]["select"] == "bins"


def test_select_last_keeps_the_last_epoch_and_report_every_sets_the_cadence(pack, genotype, tmp_path):
    out = tmp_path / "last"
    assert train_main(["--genotype", str(genotype), "--data", str(pack), "--output", str(out), "--epochs", "2",
                       "--select", "last", "--holdout-ids", "2", "--report-every", "1", *_TRAIN]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selection"]["select"] == "last" and metrics["selection"]["model_epoch"] == 2
    assert all(list(e["val"]) == ["holdout"] and set(e["benchmarks"]) == set(_BINS) for e in metrics["epochs"])
    model = torch.load(out / "model.pt", weights_only=True)["model"]
    last = torch.load(out / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(model[k], last[k]) for k in last)


@pytest.mark.parametrize("flags, needle", [
    (["--select", "holdout", "--holdout-ids", "0"], "--select holdout: expected held-out identities"),
    (["--select", "bins", "--holdout-ids", "2"], "--holdout-ids: expected none with --select bins"),
    (["--select", "bins", "--val-bins", "agedb_30"], "agedb_30.bin: expected a verification .bin pack"),
])
def test_train_refuses_a_selection_it_cannot_honour_before_writing(flags, needle, pack, genotype, tmp_path, capsys):
    out = tmp_path / "refused"
    rc = train_main(["--genotype", str(genotype), "--data", str(pack), "--output", str(out), *_TRAIN, *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and needle in err[-1] and not out.exists()
