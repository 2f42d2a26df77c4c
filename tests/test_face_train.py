"""facerec-train and the trainer: learning, NaN guard, bad input; killed (at exact points, through
nas_core.faults), stopped (SIGTERM) or refused (changed settings, a used folder, a second writer) runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facerec.cli.train import main as train_main
from facerec.data.datasets import FaceDataset
from facerec.model.heads import create_head
from facerec.model.space import IResNetSpace
from facerec.train.config import TrainConfig
from facerec.train.loop import param_groups, train_model
from facerec.train.recipe import scheduled_lr
from facerec.train.run import lr_schedule
from nas_core.genotype import Genotype

TINY = Genotype.uniform(4, 4)




@pytest.fixture(scope="module")
def tiny_genotype(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("genotype") / "result.json"
    path.write_text(json.dumps({"genotype": TINY.to_dict(), "space": {"embedding_size": 64}}))
    return path


def _train_args(pack: Path, genotype: Path, out: Path, *extra: str) -> list[str]:
    return ["--genotype", str(genotype), "--data", str(pack), "--output", str(out), "--batch-size", "8",
            "--lr", "0.05", "--workers", "0", "--holdout-ids", "2", "--no-progress", *extra]


def test_loss_goes_down_on_the_demo_pack(tiny_pack):
    torch.manual_seed(0)
    data = FaceDataset(tiny_pack)
    backbone = IResNetSpace(embedding_size=64).build(TINY)
    head = create_head("cosface", 64, data.num_classes)
    outcome = train_model(backbone, head, data, TrainConfig(epochs=6, batch_size=16, lr=0.1, workers=0),
                          progress=False)
    losses = [h["loss"] for h in outcome.history]
    assert len(losses) == 6 and outcome.global_step == 6 * (len(data) // 16)
    assert losses[-1] < 0.8 * losses[0], losses


def test_no_weight_decay_on_bn_bias_prelu():
    model = IResNetSpace(embedding_size=64).build(TINY)
    groups = {g["weight_decay"]: g for g in param_groups(model, 5e-4)}
    assert sorted(groups) == [0.0, 5e-4]
    decay, no_decay = groups[5e-4], groups[0.0]
    assert len(decay["params"]) + len(no_decay["params"]) == sum(p.requires_grad for p in model.parameters())
    no_decay_ids = {id(p) for p in no_decay["params"]}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d | torch.nn.PReLU | torch.nn.BatchNorm1d):
            assert all(id(p) in no_decay_ids for p in module.parameters(recurse=False) if p.requires_grad), name
    assert all(p.ndim > 1 for p in decay["params"])


def test_lr_milestones_scale_with_epochs():
    assert TrainConfig(epochs=26).lr_milestones() == [12, 20, 24]
    assert TrainConfig(epochs=13).lr_milestones() == [6, 10, 12]
    assert TrainConfig(epochs=2).lr_milestones() == [1]


_SCHEDULES = {  # lr schedules of the recipes, the truncated ranking's trials and a warm-up before step decay
    "adaface": TrainConfig(epochs=26),
    "small": TrainConfig(epochs=4, lr=0.1, warmup_epochs=1.0, schedule="cosine"),
    "truncated": TrainConfig(epochs=2, lr=0.1, warmup_epochs=1.0, schedule="cosine", schedule_epochs=6),
    "step after warm-up": TrainConfig(epochs=13, lr=0.2, warmup_epochs=1.0),
}


def _schedule(config: TrainConfig, steps_per_epoch: int):
    """An SGD over two parameter groups (as the trainer's, with and without weight decay) and its lr schedule."""
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "weight_decay": 0.0},
              {"params": [torch.nn.Parameter(torch.zeros(2, 2))]}]
    optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, weight_decay=5e-4)
    return optimizer, lr_schedule(optimizer, config, steps_per_epoch)


@pytest.mark.parametrize("name", sorted(_SCHEDULES))
def test_every_steps_lr_is_the_recipes_formula_also_after_a_resume(name):
    import io

    config, steps_per_epoch = _SCHEDULES[name], 3
    total = config.epochs * steps_per_epoch
    optimizer, scheduler = _schedule(config, steps_per_epoch)
    lrs = []
    for step in range(total):
        if step == total // 2:  # resumed from the state last.pt holds (loaded as weights_only)
            buffer = io.BytesIO()
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
            buffer.seek(0)
            saved = torch.load(buffer, weights_only=True)
            optimizer, scheduler = _schedule(config, steps_per_epoch)
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
        lrs.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert lrs == [[scheduled_lr(config, step, steps_per_epoch)] * 2 for step in range(total)]


def test_adaface_lr_is_the_per_epoch_step_decay():
    config, steps_per_epoch = _SCHEDULES["adaface"], 3
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=config.lr)
    per_epoch = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.lr_milestones(), gamma=0.1)
    expected = []
    for _ in range(config.epochs):
        expected += [optimizer.param_groups[0]["lr"]] * steps_per_epoch
        optimizer.step()
        per_epoch.step()
    got = [scheduled_lr(config, step, steps_per_epoch) for step in range(len(expected))]
    assert got == pytest.approx(expected, rel=1e-12, abs=0)
    assert sorted(set(got), reverse=True) == pytest.approx([0.1, 0.01, 0.001, 0.0001])


def test_the_trainer_steps_at_the_scheduled_lr(tiny_pack, monkeypatch):
    from facerec.train import loop

    seen, amp_step = [], loop.amp_step

    def recording(loss, optimizer, *args, **kwargs):
        seen.append({group["lr"] for group in optimizer.param_groups})
        return amp_step(loss, optimizer, *args, **kwargs)

    monkeypatch.setattr(loop, "amp_step", recording)
    data = FaceDataset(tiny_pack)
    config = TrainConfig(epochs=2, batch_size=16, lr=0.1, warmup_epochs=1.0, schedule="cosine", workers=0)
    outcome = train_model(IResNetSpace(embedding_size=64).build(TINY), create_head("cosface", 64, data.num_classes),
                          data, config, progress=False)
    steps = len(data) // 16
    assert seen == [{scheduled_lr(config, step, steps)} for step in range(2 * steps)]
    assert [h["lr"] for h in outcome.history] == [scheduled_lr(config, steps - 1, steps),
                                                 scheduled_lr(config, 2 * steps - 1, steps)]


class _NanOnce(torch.nn.Module):
    """A head whose second call returns NaN logits (a transient numeric blow-up)."""

    def __init__(self, head):
        super().__init__()
        self.head, self.calls = head, 0

    def forward(self, embeddings, labels):
        self.calls += 1
        logits = self.head(embeddings, labels)
        return logits * float("nan") if self.calls == 2 else logits


def test_nan_step_is_skipped_and_training_goes_on(tiny_pack):
    data = FaceDataset(tiny_pack)
    backbone = IResNetSpace(embedding_size=64).build(TINY)
    head = _NanOnce(create_head("adaface", 64, data.num_classes))
    outcome = train_model(backbone, head, data, TrainConfig(epochs=1, batch_size=8, workers=0), progress=False)
    assert outcome.nan_steps == [2]
    assert outcome.global_step == len(data) // 8
    assert all(torch.isfinite(p).all() for p in backbone.parameters())


def test_repeated_nan_stops_with_a_clear_error(tiny_pack, tiny_genotype, tmp_path, capsys):
    out = tmp_path / "nan"
    # lr = 1e30 (inf is refused as a flag): the first step blows every weight up, every later loss is NaN.
    rc = train_main(_train_args(tiny_pack, tiny_genotype, out, "--epochs", "2", "--lr", "1e30",
                                "--max-nan-steps", "3"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("error: training: loss was not finite for 3 steps in a row")
    log = (out / "train.log").read_text()
    assert log.count("step skipped") == 3


def test_train_writes_model_metrics_log_and_tensorboard(tiny_pack, tiny_genotype, tmp_path):
    from facerec.model.checkpoint import load_backbone

    out = tmp_path / "run"
    assert train_main(_train_args(tiny_pack, tiny_genotype, out, "--epochs", "2", "--head", "arcface")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert 0.0 <= metrics["epochs"][-1]["val"]["holdout"]["accuracy"] <= 1.0
    assert metrics["genotype"] == TINY.to_dict() and metrics["images_per_second"] > 0
    model, ckpt = load_backbone(out / "model.pt")
    assert Genotype.from_dict(ckpt["genotype"]) == TINY and ckpt["config"]["train"]["head"] == "arcface"
    assert model(torch.zeros(2, 3, 112, 112)).shape == (2, 64)  # embedding size taken from result.json
    assert any(p.name.startswith("events") for p in (out / "tb").iterdir())
    assert "epoch 2/2" in (out / "train.log").read_text()


# 48 training images, batch 8: 6 steps an epoch, 18 in all; last.pt after steps 4, 6, 8, 12, 16 and 18.
_RESUMABLE = ("--epochs", "3", "--checkpoint-every", "4")


def run_with_fault(args: list[str], **fault: str) -> subprocess.CompletedProcess:
    """facerec-train in a subprocess that a fault-injection point (nas_core.faults) ends at an exact place."""
    return subprocess.run([sys.executable, "-m", "facerec.cli.train", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", **fault})


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_weights(out: Path, reference: Path) -> None:
    """Bit for bit: the best epoch's model.pt and the final backbone, head and optimizer of last.pt."""
    for name, keys in (("model.pt", ("model",)), ("last.pt", ("model", "head", "optimizer"))):
        got, want = _load(out / name), _load(reference / name)
        for key in keys:
            flat_got = dict(_flatten(got[key])), dict(_flatten(want[key]))
            assert flat_got[0].keys() == flat_got[1].keys(), (name, key)
            bad = [k for k, v in flat_got[0].items() if not _equal(v, flat_got[1][k])]
            assert not bad, (name, key, bad[:5])


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}{k}.")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{prefix}{i}.")
    else:
        yield prefix, value


def _equal(a, b) -> bool:
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


@pytest.fixture(scope="module")
def straight(tiny_pack, tiny_genotype, tmp_path_factory) -> Path:
    """The uninterrupted run the killed ones must match, on one thread as they run (a module fixture is set up
    before conftest's function-scoped one-thread fixture; float sums depend on the thread count)."""
    out = tmp_path_factory.mktemp("straight") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_main(_train_args(tiny_pack, tiny_genotype, out, *_RESUMABLE)) == 0
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("fault, saved", [
    (("FACENAS_FAIL_AFTER_STEPS", "10"), (8, 2)),  # mid-epoch 2: resumes from the step-8 checkpoint
    (("FACENAS_FAIL_IN_WRITE", "last.pt:3"), (6, 0)),  # dies writing step 8's last.pt: step 6's stays
])
def test_killed_training_resumes_to_the_uninterrupted_weights(fault, saved, straight, tiny_pack, tiny_genotype,
                                                             tmp_path):
    out = tmp_path / "killed"
    args = _train_args(tiny_pack, tiny_genotype, out, *_RESUMABLE)
    proc = run_with_fault(args, **dict([fault]))
    assert proc.returncode == 137 and "fault injection: killed" in proc.stderr, proc.stderr[-2000:]
    state = _load(out / "last.pt")["train_state"]
    assert (state["global_step"], state["step_in_epoch"]) == saved
    assert train_main(args + ["--resume", str(out)]) == 0
    log = (out / "train.log").read_text()
    assert f"resumed from {out / 'last.pt'}: epoch {saved[0] // 6 + 1}, step {saved[0]} ({saved[1]}/6 " in log
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["step"] for e in metrics["epochs"]] == [6, 12, 18]
    assert_same_weights(out, straight)


def test_sigterm_writes_last_pt_and_says_how_to_resume(straight, tiny_pack, tiny_genotype, tmp_path):
    out = tmp_path / "stopped"
    args = _train_args(tiny_pack, tiny_genotype, out, *_RESUMABLE)
    proc = run_with_fault(args, FACENAS_SIGNAL_AFTER_STEPS="9")  # SIGTERM raised in the process after step 9
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"stopped by SIGTERM after step 9: wrote {out / 'last.pt'}; resume with --resume {out}" in proc.stdout
    state = _load(out / "last.pt")["train_state"]
    assert (state["global_step"], state["step_in_epoch"]) == (9, 3)
    assert not list(out.glob(".*.tmp")) and not (out / ".facenas.lock").exists()
    assert train_main(args + ["--resume", str(out)]) == 0
    assert_same_weights(out, straight)


def test_last_pt_holds_the_schedule_at_its_step(straight):
    ckpt = _load(straight / "last.pt")
    config, step = TrainConfig.from_dict(ckpt["config"]["train"]), ckpt["train_state"]["global_step"]
    assert ckpt["scheduler"]["last_epoch"] == step == 18
    assert {group["lr"] for group in ckpt["optimizer"]["param_groups"]} == {scheduled_lr(config, step, 6)}


def test_a_last_pt_of_the_per_epoch_schedule_resumes_to_the_uninterrupted_weights(straight, tiny_pack, tiny_genotype,
                                                                                   tmp_path):
    out = tmp_path / "before"
    args = _train_args(tiny_pack, tiny_genotype, out, *_RESUMABLE)
    assert run_with_fault(args, FACENAS_FAIL_AFTER_STEPS="10").returncode == 137  # last.pt holds step 8
    ckpt = _load(out / "last.pt")
    config = TrainConfig.from_dict(ckpt["config"]["train"])
    # As the trainer wrote it before its one per-step schedule: a MultiStepLR stepped after each epoch (one
    # here), and the optimizer at the lr warm-up and cosine had set for the step before (step 7, 0-based).
    optimizer, _ = _schedule(config, 6)
    per_epoch = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.lr_milestones(), gamma=0.1)
    optimizer.step()
    per_epoch.step()
    ckpt["scheduler"] = {**per_epoch.state_dict(), "milestones": dict(per_epoch.milestones)}
    for group in ckpt["optimizer"]["param_groups"]:
        group["lr"] = scheduled_lr(config, 7, 6)
    torch.save(ckpt, out / "last.pt")
    assert train_main(args + ["--resume", str(out)]) == 0
    assert_same_weights(out, straight)


@pytest.mark.parametrize("flag, value", [("--epochs", "4"), ("--batch-size", "16"), ("--data", None)])
def test_resume_with_a_changed_setting_exits_2_naming_it(flag, value, straight, tiny_pack, tiny_genotype, tmp_path,
                                                        capsys):
    out = tmp_path / "out"
    shutil.copytree(straight, out)
    before = _listing(out)
    if flag == "--data":  # the same images in another folder are another --data
        value = str(shutil.copytree(tiny_pack, tmp_path / "other_pack"))
        args = _train_args(Path(value), tiny_genotype, out, *_RESUMABLE)
    else:
        args = _train_args(tiny_pack, tiny_genotype, out, *_RESUMABLE, flag, value)
    assert train_main(args + ["--resume", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {out / 'last.pt'}: expected {flag} ") and value in err[0]
    assert _listing(out) == before  # nothing written


def test_new_run_refuses_a_folder_holding_files(straight, tiny_pack, tiny_genotype, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(straight, out)
    before = _listing(out)
    assert train_main(_train_args(tiny_pack, tiny_genotype, out, *_RESUMABLE)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == (f"error: {out}: expected a new or empty output folder; it holds files of an "
                                        f"earlier run (continue that run with --resume {out}, or choose another --output)")
    assert _listing(out) == before


def test_a_second_writer_refuses_and_a_killed_ones_lock_is_no_obstacle(straight, tiny_pack, tiny_genotype, tmp_path,
                                                                       capsys):
    from nas_core.runlock import run_lock

    out = tmp_path / "out"
    shutil.copytree(straight, out)
    args = _train_args(tiny_pack, tiny_genotype, out, *_RESUMABLE, "--resume", str(out))
    with run_lock(out, "facerec-train"):  # another writer (its own open file: flock tells them apart)
        assert train_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"error: {out}: expected no other process writing into this folder; facerec-train " \
        f"(pid {os.getpid()} on " in err[0]
    # A writer killed while holding the lock leaves the file behind, with its pid; the lock went with it.
    code = f"import os\nfrom nas_core.runlock import run_lock\nlock = run_lock({str(out)!r}, 'killed')\nlock.__enter__()\nos._exit(137)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 137
    assert '"command": "killed"' in (out / ".facenas.lock").read_text()
    assert train_main(args) == 0  # a finished run resumed: nothing left to train
    assert not (out / ".facenas.lock").exists()


def test_read_only_output_exits_2_naming_it(straight, tiny_pack, tiny_genotype, tmp_path, capsys):
    from test_reliability import read_only

    out = tmp_path / "out"
    shutil.copytree(straight, out)
    before = _listing(out)
    with read_only(out):
        assert train_main(_train_args(tiny_pack, tiny_genotype, out, *_RESUMABLE, "--resume", str(out))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {out / '.facenas.lock'}: expected a folder this user can "
                                               "write to (")
    assert _listing(out) == before


def test_full_disk_exits_2_naming_the_file_and_keeps_the_last_checkpoint(straight, tiny_pack, tiny_genotype,
                                                                         tmp_path, capsys):
    from test_reliability import tiny_disk

    # Room for the first last.pt (step 4) and the small files, not for model.pt at the end of epoch 1.
    size_kb = ((straight / "last.pt").stat().st_size + (straight / "model.pt").stat().st_size // 2) // 1024 + 64
    with tiny_disk(tmp_path / "disk", size_kb) as out:
        assert train_main(_train_args(tiny_pack, tiny_genotype, out, *_RESUMABLE)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {out / 'model.pt'}: expected free space on the disk of ")
        assert _load(out / "last.pt")["train_state"]["global_step"] == 4  # the previous checkpoint, whole
        assert not (out / "model.pt").exists() and not list(out.glob(".*.tmp"))


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.parametrize("bad", ["missing", "empty"])
def test_bad_data_exits_2_with_one_line(bad, tiny_genotype, tmp_path, capsys):
    data = tmp_path / "data"
    if bad == "empty":
        data.mkdir()
    rc = train_main(["--genotype", str(tiny_genotype), "--data", str(data), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    said = f"error: --data {data}: expected an existing folder" if bad == "missing" else f"error: {data}: expected"
    assert rc == 2 and len(err) == 1 and err[0].startswith(said)
    assert not (tmp_path / "o").exists()  # nothing written half-way


def test_missing_genotype_file_exits_2(tiny_pack, tmp_path, capsys):
    rc = train_main(["--genotype", str(tmp_path / "nope.json"), "--data", str(tiny_pack), "--output", str(tmp_path)])
    assert rc == 2 and "nope.json: expected" in capsys.readouterr().err


def test_same_seed_same_training(tiny_pack, tiny_genotype, tmp_path):
    losses = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert train_main(_train_args(tiny_pack, tiny_genotype, out, "--epochs", "1", "--seed", "3")) == 0
        losses.append(json.loads((out / "metrics.json").read_text())["epochs"][0]["loss"])
    assert losses[0] == losses[1]
