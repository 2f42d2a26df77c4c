"""torchrun on CPU (gloo): two ranks train with DDP and run the search together, the main rank alone speaking and
verifying (ARCHITECTURE §8). The training test (~20 s) runs by default; the search one is slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from facerec.data.demo import demo_pack


def _torchrun(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


# facerec-train with each verification (facerec.train.loop's call of validation.verify) noted in a file by rank.
_COUNTING_TRAIN = """
import os, sys
from facerec.train import loop

def counted(*args, **kwargs):
    with open(os.environ["VERIFY_LOG"], "a") as log:
        log.write("rank " + os.environ["RANK"] + "\\n")
    return verify(*args, **kwargs)

verify, loop.verify = loop.verify, counted
from facerec.cli.train import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    return demo_pack(tmp_path_factory.mktemp("pack"), num_identities=8, images_per_identity=8)


def test_torchrun_train_splits_batches_over_ranks_and_speaks_and_verifies_once(pack, tmp_path):
    genotype = tmp_path / "g.json"
    genotype.write_text(json.dumps({"depth": 4, "width": 4, "ops": ["sep"] * 4, "kernels": [3] * 4}))
    script, verified = tmp_path / "counting_train.py", tmp_path / "verified.txt"
    script.write_text(_COUNTING_TRAIN)
    out = tmp_path / "out"
    proc = _torchrun(str(script), "--genotype", str(genotype), "--data", str(pack), "--output", str(out),
                     "--epochs", "2", "--batch-size", "16", "--workers", "0", "--holdout-ids", "2", "--no-progress",
                     env={"VERIFY_LOG": str(verified)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["world_size"] == 2
    assert [e["step"] for e in metrics["epochs"]] == [3, 6]  # 48 images / 2 ranks / 8 per rank
    said = proc.stdout + proc.stderr
    for line in (f"wrote {out / 'model.pt'}", "epoch 1/2 step 3: loss", "epoch 2/2 step 6: loss", "recipe small"):
        assert said.count(line) == 1, (line, said[-3000:])
    assert verified.read_text().splitlines() == ["rank 0", "rank 0"]  # once an epoch, on the main rank


@pytest.mark.slow
def test_torchrun_search_journals_once_and_writes_the_result(pack, tmp_path):
    flags = ["--data", str(pack), "--holdout-ids", "2", "--e-min", "1", "--d-min", "4", "--d-max", "5",
             "--w-min", "4", "--w-max", "6", "--micro-epochs", "1", "--max-trials", "4", "--batch-size", "16",
             "--workers", "0", "--embedding-size", "32", "--no-progress"]
    proc = _torchrun("-m", "facerec.cli.search", "--output", str(tmp_path / "ddp"), *flags)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert len(result["trials"]) == 4 and (tmp_path / "ddp" / "model.pt").is_file()
    # Rank 0 alone journals: one line per distinct trial (a micro baseline may repeat a macro trial).
    lines = [json.loads(line) for line in (tmp_path / "ddp" / "journal.jsonl").read_text().splitlines()]
    distinct = {(json.dumps(t["genotype"], sort_keys=True), t["epochs"]) for t in result["trials"]}
    assert len(lines) == len(distinct) and {(json.dumps(r["genotype"], sort_keys=True), r["epochs"])
                                             for r in lines} == distinct
