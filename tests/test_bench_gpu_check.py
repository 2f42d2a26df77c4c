"""bench/gpu_check.py --device cpu --tiny: every step of the GPU check runs end to end on the CPU (pack and cache,
training throughput of IResNet-50 and the R-58-256 shape, three search trials, train + export + eval), the JSON
records each step with its figures and seconds, and its figures agree with one another (medians of the rounds,
ratios of the medians, trial seconds adding up to the search's, commands inside their steps)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = {"pack", "train", "search", "export_eval"}
COMMANDS = {"search", "train", "export", "eval"}


def _rounded_ratio_holds(ratio: float, top: float, bottom: float) -> bool:
    """ratio = round(a / b, 3) for some a, b whose round(., 2) are ``top`` and ``bottom`` (> 0.005)."""
    low, high = (top - 0.005) / (bottom + 0.005), (top + 0.005) / (bottom - 0.005)
    return low - 0.0005 <= ratio <= high + 0.0005


def _rounded_rate_holds(rate: int, count: int, seconds: float) -> bool:
    """rate = round(count / s) for some s whose round(., 3) is ``seconds``."""
    return count / (seconds + 0.0005) - 0.5 <= rate <= count / (seconds - 0.0005) + 0.5


def test_gpu_check_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--tiny",
                           "--output", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(done.stdout) == result
    assert result["host"]["device"] == "cpu"
    assert set(result["seconds"]) == STEPS and set(result["command_seconds"]) == COMMANDS
    settings, seconds = result["settings"], result["seconds"]

    pack = result["pack"]
    assert (pack["images"], pack["identities"], pack["lfw_pairs"]) == (192, 24, 60)
    assert pack["images"] == settings["identities"] * settings["per_identity"]
    assert _rounded_rate_holds(pack["cache_images_per_second"], pack["images"], pack["cache_seconds"]), pack
    assert seconds["pack"] + 0.06 >= pack["pack_seconds"] + pack["cache_seconds"]  # (rounded to 0.1 and 0.001)

    for net in ("iresnet50", "R-58-256 shape"):
        figures = result["train"][net]
        cache, compute = figures["cache_step_images_per_second"], figures["compute_only_images_per_second"]
        rounds = figures["rounds"]
        assert len(rounds["cache_step"]) == len(rounds["compute_only"]) >= 1
        assert abs(statistics.median(rounds["cache_step"]) - cache) <= 0.01
        assert abs(statistics.median(rounds["compute_only"]) - compute) <= 0.01
        assert cache > 0.005 and compute > 0.005 and _rounded_ratio_holds(figures["ratio"], cache, compute), figures
        assert figures["batch_size"] == settings["batch_size"] and figures["peak_memory_gb"] is None  # CPU

    search = result["search"]
    records = search["trial_records"]
    assert search["trials"] == len(records) == len(search["trial_lines"]) == 3, search
    for record, line in zip(records, search["trial_lines"], strict=True):
        assert f"{record['genotype']} E={record['epochs']}" in line and f"acc={record['fitness']:.2f}" in line
        assert record["epochs"] >= 1 and record["seconds"] > 0 and 0 <= record["fitness"] <= 100
    # Trials run one after another (--parallel 1): their seconds add up to the search's, inside its wall time.
    assert abs(sum(r["seconds"] for r in records) - search["search_seconds"]) <= 0.01 * len(records)
    assert search["search_seconds"] <= search["wall_seconds"] + 0.05  # (each figure to 0.1 s)
    assert result["command_seconds"]["search"] <= search["wall_seconds"] + 0.1 <= seconds["search"] + 0.2

    checked = result["export_eval"]
    assert any("relative" in line for line in checked["export"]), checked["export"]
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert "onnxruntime-gpu" in checked["ort_cuda_parity"]["skipped"]
    pt, onnx = (checked[k]["results"]["lfw"] for k in ("eval_pt", "eval_onnx"))
    assert pt["pairs"] == onnx["pairs"] == pack["lfw_pairs"]
    assert 0 <= pt["accuracy"] <= 1 and abs(pt["accuracy"] - onnx["accuracy"]) < 0.01, (pt, onnx)
    commands = result["command_seconds"]
    assert commands["train"] + commands["export"] + commands["eval"] <= seconds["export_eval"] + 0.25  # 5 roundings
