"""bench/gpu_check.py --device cpu --tiny: every step of the GPU check runs end to end on the CPU (pack and cache,
training throughput of IResNet-50 and the R-58-256 shape, three search trials, train + export + eval) and the
JSON says what ran."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--tiny",
                           "--output", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(done.stdout) == result
    assert result["host"]["device"] == "cpu"
    assert (result["pack"]["images"], result["pack"]["identities"], result["pack"]["lfw_pairs"]) == (192, 24, 60)
    for net in ("iresnet50", "R-58-256 shape"):
        figures = result["train"][net]
        assert figures["cache_step_images_per_second"] > 0 and figures["compute_only_images_per_second"] > 0
        assert figures["ratio"] > 0 and figures["peak_memory_gb"] is None  # no GPU memory on a CPU
    search = result["search"]
    assert search["trials"] == 3 and len(search["trial_lines"]) == 3, search
    checked = result["export_eval"]
    assert any("relative" in line for line in checked["export"]), checked["export"]
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert "onnxruntime-gpu" in checked["ort_cuda_parity"]["skipped"]
    pt, onnx = (checked[k]["results"]["lfw"]["accuracy"] for k in ("eval_pt", "eval_onnx"))
    assert 0 <= pt <= 1 and abs(pt - onnx) < 0.01, (pt, onnx)
    assert set(result["seconds"]) == {"pack", "train", "search", "export_eval"}
