"""facerec-export --precision fp16|int8: reduced models keep float32 input/output, are judged by the
verification accuracy on --check-bin (facerec-eval's numbers), and bad flags exit 2 with one line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from eval_protocols.embed import Embedder
from facerec.cli import export as export_cli
from facerec.model.checkpoint import save_checkpoint
from facerec.model.space import IResNetSpace
from nas_core.genotype import Genotype

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from make_fixtures import make_verification_pack  # noqa: E402

FAST = ["--batch-size", "4", "--repeats", "1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = IResNetSpace(embedding_size=32).build(Genotype(4, 4, ("sep", "conv", "sep", "sep"), (3, 3, 3, 3)))
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(8, 3, 112, 112) * 2 - 1)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, backbone=model.eval())
    return path


@pytest.fixture(scope="module")
def check_bin(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bins") / "lfw.bin"
    make_verification_pack(path, np.random.default_rng(0), pairs=20, identities=6)
    return path


def _io_types(path: Path) -> list[int]:
    graph = onnx.load(str(path)).graph
    return [v.type.tensor_type.elem_type for v in (*graph.input, *graph.output)]


def test_int8_export(checkpoint, check_bin, tiny_pack, tmp_path, capsys):
    out = tmp_path / "int8" / "model.onnx"
    rc = export_cli.main(["--checkpoint", str(checkpoint), "--output", str(out), "--precision", "int8",
                          "--calibration", str(tiny_pack), "--check-bin", str(check_bin), "--max-drop", "100",
                          *FAST])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "4 random + 64 face images" in printed  # the calibration images are checked for parity too
    assert f"check-bin {check_bin} (20 pairs): fp32 " in printed and "int8/fp32" in printed
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert _io_types(out) == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT]  # callers feed the same input
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]
    embeddings = Embedder(out).embed(np.zeros((3, 112, 112, 3), np.uint8), normalize=False)
    assert embeddings.shape == (3, 32) and np.isfinite(embeddings).all()


def test_fp16_export_keeps_float32_io(checkpoint, check_bin, tmp_path, capsys):
    out = tmp_path / "model-fp16.onnx"
    rc = export_cli.main(["--checkpoint", str(checkpoint), "--output", str(out), "--precision", "fp16",
                          "--check-bin", str(check_bin), *FAST])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    model = onnx.load(str(out))
    assert _io_types(out) == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT]
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "checked with the CPU provider instead" in printed
    assert "fp16/fp32" in printed and "drop" in printed


def test_fp16_that_cannot_run_here_is_written_and_says_so(checkpoint, check_bin, tmp_path, monkeypatch,
                                                          capsys):
    import facerec.deploy.quantize

    monkeypatch.setattr(facerec.deploy.quantize, "fp16_providers", lambda: (["CPUExecutionProvider"], "cpu"))
    monkeypatch.setattr(facerec.deploy.quantize, "runs_here", lambda *a, **k: "NOT_IMPLEMENTED: Conv(float16)")
    out = tmp_path / "model-fp16.onnx"
    rc = export_cli.main(["--checkpoint", str(checkpoint), "--output", str(out), "--precision", "fp16",
                          "--check-bin", str(check_bin), *FAST])
    printed = capsys.readouterr().out
    assert rc == 0 and out.is_file()
    assert "fp16: not verified here: it runs only with onnxruntime's CUDA provider" in printed


def test_accuracy_drop_over_max_drop_is_refused(checkpoint, check_bin, tmp_path, monkeypatch, capsys):
    import facerec.deploy.quantize

    real = facerec.deploy.quantize.verification_accuracy

    def int8_loses_a_point(model, bin_path, **kwargs):
        result = dict(real(model, bin_path, **kwargs))
        if Path(model).name == "int8.onnx":
            result["accuracy"] -= 0.01
        return result

    monkeypatch.setattr(facerec.deploy.quantize, "verification_accuracy", int8_loses_a_point)
    out = tmp_path / "new" / "model.onnx"
    rc = export_cli.main(["--checkpoint", str(checkpoint), "--output", str(out), "--precision", "int8",
                          "--calibration", str(check_bin), "--check-bin", str(check_bin), "--max-drop", "0.5",
                          *FAST])
    err = capsys.readouterr().err
    assert rc == 1
    assert "loses" in err and "(> --max-drop 0.5); not written" in err
    assert not (tmp_path / "new").exists()


BAD_FLAGS = {
    "precision": (["--precision", "fp8"], "--precision fp8: expected one of fp32, fp16, int8"),
    "int8 without calibration": (["--precision", "int8", "--check-bin", "{bin}"],
                                 "--precision int8: expected --calibration"),
    "fp16 without check-bin": (["--precision", "fp16"], "--precision fp16: expected --check-bin"),
    "calibration missing": (["--precision", "int8", "--check-bin", "{bin}", "--calibration", "{tmp}/none"],
                            "--calibration {tmp}/none: expected a face pack folder"),
    "calibration empty folder": (["--precision", "int8", "--check-bin", "{bin}", "--calibration", "{empty}"],
                                 "--calibration {empty}: expected one sub-folder per identity"),
    "check-bin garbage": (["--check-bin", "{junk}"], "--check-bin {junk}: expected a pickled"),
    "check-bin missing": (["--check-bin", "{tmp}/none.bin"], "--check-bin {tmp}/none.bin: file not found"),
    "max-drop negative": (["--max-drop", "-1"], "--max-drop -1: expected accuracy points between 0 and 100"),
    "max-drop not a number": (["--max-drop", "half"], "--max-drop half: expected accuracy points"),
    "data missing": (["--data", "{tmp}/none"], "--data {tmp}/none: expected a face pack folder"),
    "data junk pack": (["--data", "{junkpack}"], "--data {junkpack}/train.rec"),
    "tolerance zero": (["--tolerance", "0"], "--tolerance 0: expected a relative L2 error between"),
    "tolerance nan": (["--tolerance", "nan"], "--tolerance nan: expected a relative L2 error"),
    "tolerance not a number": (["--tolerance", "tight"], "--tolerance tight: expected a relative L2 error"),
    "output is a folder": (["--output", "{empty}"], "--output {empty}: expected an .onnx file name"),
}


@pytest.mark.parametrize("case", list(BAD_FLAGS))
def test_bad_flag_exits_2_with_one_line_and_writes_nothing(case, checkpoint, check_bin, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.bin").write_bytes(b"not a pickle")
    (tmp_path / "junkpack").mkdir()
    (tmp_path / "junkpack" / "train.rec").write_bytes(b"\x00" * 10)
    names = {"bin": check_bin, "tmp": tmp_path, "empty": tmp_path / "empty", "junk": tmp_path / "junk.bin",
             "junkpack": tmp_path / "junkpack"}
    flags, expected = (part if isinstance(part, str) else [f.format(**names) for f in part]
                       for part in BAD_FLAGS[case])
    out = tmp_path / "out" / "model.onnx"
    rc = export_cli.main(["--checkpoint", str(checkpoint), "--output", str(out), *flags])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith(f"error: {expected.format(**names)}") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
