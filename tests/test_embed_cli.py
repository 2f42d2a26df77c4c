"""facerec-embed and facerec.load_embedder: names, flip-fused normalised embeddings, landmark alignment,
gallery top-k with rank-1 on ORL, onnxruntime provider choice, and every bad input."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from eval_protocols.align import align_face
from eval_protocols.embed import CPU_PROVIDER, CUDA_PROVIDER, onnx_providers
from facerec import load_embedder
from facerec.cli.embed import main
from facerec.data.images import fit_face, load_image
from facerec.errors import FaceRecError

HELD_OUT = [f"s{i}" for i in range(31, 41)]  # ORL identities the demo never trains on
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                     [70.7299, 92.2041]])


class TinyFaceNet(nn.Module):
    """Random conv features with random (non-trivial) BatchNorm statistics: 648-d raw embeddings."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 5, stride=4)
        self.bn = nn.BatchNorm2d(8)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.3, 0.3)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.2, 0.2)
        self.pool = nn.AvgPool2d(3)

    def forward(self, x):
        return self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1)


def _reference_embeddings(net: nn.Module, images: np.ndarray) -> np.ndarray:
    """Flip-fused, L2-normalised embeddings written out from the protocol: (x/255 − 0.5)/0.5 NCHW."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
    with torch.no_grad():
        fused = (net.eval()(x) + net(x.flip(3))).numpy()
    return fused / np.linalg.norm(fused, axis=1, keepdims=True)


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> tuple[Path, nn.Module]:
    net = TinyFaceNet().eval()
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(path), input_names=["input"],
                      dynamic_axes={"input": {0: "n"}}, dynamo=False)
    return path, net


@pytest.fixture(scope="module")
def orl_split(orl_dir, tmp_path_factory) -> Path:
    """Held-out ORL identities fitted to 112x112 as facerec-data does: image 1 of each in gallery/, 2-10 in query/."""
    root = tmp_path_factory.mktemp("orl")
    for identity in HELD_OUT:
        for k in range(1, 11):
            face = fit_face(load_image(orl_dir / identity / f"{k}.pgm"))
            _write_rgb(root / ("gallery" if k == 1 else "query") / identity / f"{k}.png", face)
    return root


def test_gallery_top_k_and_rank1_on_orl_held_out_identities(orl_split, onnx_model, tmp_path, capsys):
    model, net = onnx_model
    gallery_npz, query_npz = tmp_path / "gallery.npz", tmp_path / "query.npz"
    assert main(["--model", str(model), "--images", str(orl_split / "gallery"), "--output", str(gallery_npz),
                 "--device", "cpu"]) == 0
    assert f"onnxruntime provider: {CPU_PROVIDER}" in capsys.readouterr().err
    assert main(["--model", str(model), "--images", str(orl_split / "query"), "--gallery", str(gallery_npz),
                 "--top-k", "3", "--output", str(query_npz), "--batch-size", "16", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.strip().splitlines()

    with np.load(gallery_npz, allow_pickle=False) as g, np.load(query_npz, allow_pickle=False) as q:
        g_names, g_emb, q_names, q_emb = g["names"].tolist(), g["embeddings"], q["names"].tolist(), q["embeddings"]
        assert str(q["model"]) == str(model)
    assert g_names == [f"{i}/1.png" for i in HELD_OUT]  # paths relative to --images, natural order
    assert q_names == [f"{i}/{k}.png" for i in HELD_OUT for k in range(2, 11)]
    assert q_emb.dtype == np.float32 and q_emb.shape == (90, 648)
    np.testing.assert_allclose(np.linalg.norm(q_emb, axis=1), 1, atol=1e-5)
    # The embeddings are the protocol's, computed here from the same PNGs with the torch net.
    faces = np.stack([load_image(orl_split / "query" / n) for n in q_names])
    np.testing.assert_allclose(q_emb, _reference_embeddings(net, faces), atol=1e-5)

    sims = q_emb @ g_emb.T
    top3 = np.argsort(-sims, axis=1, kind="stable")[:, :3]
    assert len(out) == 91
    for i, (line, name) in enumerate(zip(out, q_names)):
        fields = [f.split(" ") for f in line.split("\t")]
        assert fields[0] == [name] and [f[0] for f in fields[1:]] == [g_names[j] for j in top3[i]]
        np.testing.assert_allclose([float(f[1]) for f in fields[1:]], sims[i, top3[i]], atol=1e-4)
    hits = sum(g_names[int(top3[i, 0])].split("/")[0] == n.split("/")[0] for i, n in enumerate(q_names))
    match = re.fullmatch(r"rank-1: (\d\.\d{4}) \((\d+) of (\d+) images .*", out[-1])
    assert match, out[-1]
    assert (int(match[2]), int(match[3])) == (hits, 90)
    assert float(match[1]) == round(hits / 90, 4)
    assert hits / 90 > 0.5  # 10 identities: chance is 0.1
    print(f"ORL held-out rank-1 ({model.name}): {match[1]}")


def test_python_api_embeds_like_the_cli(orl_split, onnx_model, tmp_path):
    model, net = onnx_model
    names = ["s31/2.png", "s35/7.png", "s40/10.png"]
    faces = np.stack([load_image(orl_split / "query" / n) for n in names])
    embedder = load_embedder(model, device="cpu", batch_size=2)
    assert embedder.runtime == f"onnxruntime provider: {CPU_PROVIDER}"
    emb = embedder.embed(faces)
    assert emb.dtype == np.float32 and emb.shape == (3, 648)
    np.testing.assert_allclose(emb, _reference_embeddings(net, faces), atol=1e-5)
    np.testing.assert_allclose(embedder.embed(iter(list(faces))), emb, atol=1e-6)  # streamed one by one
    with pytest.raises(FaceRecError, match="RGB uint8 N x 112 x 112 x 3"):
        embedder.embed(faces[:, :100])


def test_pt_checkpoint_through_api_and_cli(onnx_model, tmp_path):
    from facerec.model.checkpoint import save_checkpoint
    from facerec.model.space import IResNetSpace
    from nas_core.genotype import Genotype

    torch.manual_seed(1)
    net = IResNetSpace(embedding_size=32).build(Genotype.uniform(4, 4)).eval()
    for m in net.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    save_checkpoint(tmp_path / "m.pt", backbone=net)
    rng = np.random.default_rng(0)
    faces = np.stack([cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (112, 112),
                                 interpolation=cv2.INTER_CUBIC) for _ in range(4)])
    for i, face in enumerate(faces):
        _write_rgb(tmp_path / "faces" / f"{i}.png", face)
    embedder = load_embedder(tmp_path / "m.pt", device="cpu")
    assert embedder.runtime == "torch device: cpu"
    expected = _reference_embeddings(net, faces)
    np.testing.assert_allclose(embedder.embed(faces), expected, atol=1e-5)
    assert main(["--model", str(tmp_path / "m.pt"), "--images", str(tmp_path / "faces"),
                 "--output", str(tmp_path / "e.npz"), "--device", "cpu"]) == 0
    with np.load(tmp_path / "e.npz", allow_pickle=False) as npz:
        assert npz["names"].tolist() == ["0.png", "1.png", "2.png", "3.png"]
        np.testing.assert_allclose(npz["embeddings"], expected, atol=1e-5)


def test_landmarks_align_like_the_prealigned_face(orl_dir, onnx_model, tmp_path):
    model, net = onnx_model
    aligned = fit_face(load_image(orl_dir / "s33" / "4.pgm"))  # the face in the ArcFace frame
    # A known similarity puts it into a larger "loose crop"; the landmarks follow the same transform.
    angle, scale, shift = np.deg2rad(14), 1.4, np.array([31.0, 18.5])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = np.hstack([rot, shift[:, None]])
    loose = cv2.warpAffine(aligned, forward, (230, 240), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    points = TEMPLATE @ rot.T + shift
    images = tmp_path / "photos"
    _write_rgb(images / "s33" / "loose.png", loose)
    _write_rgb(images / "s33" / "aligned.png", aligned)
    _write_rgb(images / "unlisted.png", loose)  # not in the landmarks file: not embedded
    coords = " ".join(f"{v:.3f}" for v in points.reshape(-1))
    identity = " ".join(f"{v:.4f}" for v in TEMPLATE.reshape(-1))
    (tmp_path / "lmk.txt").write_text(f"# name x1 y1 ... x5 y5 [score]\n\ns33/loose.png {coords}\n"
                                      f"s33/aligned.png {identity} 0.998\n")
    out = tmp_path / "e.npz"
    assert main(["--model", str(model), "--images", str(images), "--landmarks", str(tmp_path / "lmk.txt"),
                 "--output", str(out), "--device", "cpu"]) == 0
    with np.load(out, allow_pickle=False) as npz:
        names, emb = npz["names"].tolist(), npz["embeddings"]
    assert names == ["s33/loose.png", "s33/aligned.png"]  # file order
    # The crop the CLI embeds is the IJB alignment of the decoded image on the float32 landmarks...
    crop = align_face(load_image(images / "s33" / "loose.png"), np.float32([float(v) for v in coords.split()]))
    np.testing.assert_allclose(emb[0], _reference_embeddings(net, crop[None])[0], atol=1e-5)
    # ...which puts the face back where the pre-aligned copy has it.
    inner = (slice(8, 104), slice(8, 104))
    assert np.abs(crop[inner].astype(float) - aligned[inner]).mean() < 3.0
    assert float(emb[0] @ _reference_embeddings(net, aligned[None])[0]) > 0.99
    # Landmarks on the template itself leave an aligned face as it is.
    np.testing.assert_allclose(emb[1], _reference_embeddings(net, aligned[None])[0], atol=1e-3)


def test_onnx_provider_choice():
    both = [CUDA_PROVIDER, CPU_PROVIDER]
    assert onnx_providers("cuda", both) == ([(CUDA_PROVIDER, {"device_id": 0}), CPU_PROVIDER], None)
    assert onnx_providers("cuda:1", both) == ([(CUDA_PROVIDER, {"device_id": 1}), CPU_PROVIDER], None)
    assert onnx_providers(None, both) == ([(CUDA_PROVIDER, {"device_id": 0}), CPU_PROVIDER], None)
    assert onnx_providers("cpu", both) == ([CPU_PROVIDER], None)
    assert onnx_providers(None, [CPU_PROVIDER]) == ([CPU_PROVIDER], None)  # automatic: no complaint
    providers, note = onnx_providers("cuda", [CPU_PROVIDER])  # asked for, not there: CPU, said so
    assert providers == [CPU_PROVIDER] and "onnxruntime-gpu" in note and CPU_PROVIDER in note


def test_cuda_fallback_is_reported(onnx_model, tmp_path, capsys):
    import onnxruntime

    if CUDA_PROVIDER in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    model, _ = onnx_model
    _write_rgb(tmp_path / "faces" / "a.png", np.full((112, 112, 3), 90, np.uint8))
    assert main(["--model", str(model), "--images", str(tmp_path / "faces"), "--output", str(tmp_path / "e.npz"),
                 "--device", "cuda"]) == 0
    err = capsys.readouterr().err
    assert f"onnxruntime provider: {CPU_PROVIDER} (--device cuda: this onnxruntime has no {CUDA_PROVIDER}" in err


def test_facerec_eval_says_which_provider_ran(onnx_model, tmp_path, capsys):
    from eval_protocols.bins import write_bin
    from facerec.cli.eval import main as eval_main

    model, _ = onnx_model
    rng = np.random.default_rng(3)
    faces = [cv2.imencode(".png", rng.integers(0, 256, (112, 112, 3), dtype=np.uint8))[1].tobytes() for _ in range(40)]
    write_bin(tmp_path / "faces" / "lfw.bin", faces, [i % 2 == 0 for i in range(20)])
    assert eval_main(["--model", str(model), "--data", str(tmp_path / "faces"), "--protocol", "lfw",
                      "--device", "cpu"]) == 0
    assert f"onnxruntime provider: {CPU_PROVIDER}" in capsys.readouterr().err


def test_load_embedder_is_exported_lazily():
    import facerec
    import facerec.deploy.embedding

    # Served by the package's __getattr__: `import facerec` does not load the embedding code.
    assert "load_embedder" not in vars(facerec) and facerec.load_embedder is facerec.deploy.embedding.load_embedder
    with pytest.raises(AttributeError):
        facerec.no_such_thing  # noqa: B018


# ---- bad inputs: exit 2, one line naming the file and what was expected, nothing written -------------


def _bad_landmarks(case: str, lmk: Path, args: list[str]) -> tuple[list[str], str]:
    good = "p/0.png 38.3 51.7 73.5 51.5 56.0 71.7 41.5 92.4 70.7 92.2"
    lines = {"landmarks_malformed": f"{good}\np/1.png 1 2 3 4 5 6 7 8 nine 10",
             "landmarks_wrong_count": f"{good}\np/1.png 1 2 3 4 5 6 7 8 9",
             "landmarks_unknown_image": f"{good}\np/7.png 1 2 3 4 5 6 7 8 9 10",
             "landmarks_duplicate": f"{good}\n{good}",
             "landmarks_same_point": "p/0.png 5 5 5 5 5 5 5 5 5 5",
             "landmarks_empty": "# nothing here\n"}.get(case)
    if lines is not None:
        lmk.write_text(lines + "\n")
    return args + ["--landmarks", str(lmk)], {
        "landmarks_malformed": "lmk.txt: line 2", "landmarks_wrong_count": "got 10 fields",
        "landmarks_unknown_image": "image p/7.png not found", "landmarks_duplicate": "already has landmarks on line 1",
        "landmarks_same_point": "5 distinct points", "landmarks_empty": "found none",
        "landmarks_missing": "lmk.txt: expected a landmarks file"}[case]


def _bad_case(case: str, root: Path, model: Path) -> tuple[list[str], str]:
    images = root / "faces"
    for i in range(3):
        _write_rgb(images / "p" / f"{i}.png", np.full((112, 112, 3), 40 * i, np.uint8))
    out = ["--output", str(root / "out" / "e.npz")]
    base = ["--model", str(model), "--images", str(images), "--device", "cpu"]
    if case.startswith("landmarks"):
        return _bad_landmarks(case, root / "lmk.txt", base + out)
    if case == "model_missing":
        return ["--model", str(root / "nope.onnx"), "--images", str(images)] + out, "nope.onnx: model file not found"
    if case == "model_suffix":
        (root / "model.txt").write_text("hello")
        return ["--model", str(root / "model.txt"), "--images", str(images)] + out, "ending in .onnx or .pt"
    if case == "model_not_onnx":
        (root / "bad.onnx").write_bytes(b"not an onnx graph")
        return ["--model", str(root / "bad.onnx"), "--images", str(images)] + out, "bad.onnx: expected an ONNX model"
    if case == "model_not_checkpoint":
        (root / "bad.pt").write_bytes(b"not a checkpoint")
        return ["--model", str(root / "bad.pt"), "--images", str(images)] + out, "bad.pt: expected a facenas checkpoint"
    if case == "images_missing":
        return ["--model", str(model), "--images", str(root / "nowhere")] + out, "nowhere: expected a folder of face images"
    if case == "images_empty":
        (root / "empty").mkdir()
        (root / "empty" / "notes.txt").write_text("no faces")
        return ["--model", str(model), "--images", str(root / "empty")] + out, "empty: expected face images"
    if case == "not_112_without_landmarks":
        _write_rgb(images / "p" / "3.png", np.zeros((120, 100, 3), np.uint8))
        return base + out, "3.png: expected a 112x112 aligned face, got 100x120"
    if case == "undecodable_image":
        (images / "p" / "3.png").write_bytes(b"\x89PNG but truncated")
        return base + out, "3.png: expected an encoded image"
    if case == "gallery_not_npz":
        (root / "gallery.npz").write_text("names,embeddings\n")
        return base + out + ["--gallery", str(root / "gallery.npz")], "gallery.npz: expected an embeddings .npz"
    if case == "gallery_wrong_arrays":
        np.savez(root / "gallery.npz", features=np.zeros((2, 648), np.float32))
        return base + out + ["--gallery", str(root / "gallery.npz")], "it holds features"
    if case == "gallery_other_model":
        np.savez(root / "gallery.npz", names=np.array(["a/1.png"]), embeddings=np.ones((1, 7), np.float32))
        return base + out + ["--gallery", str(root / "gallery.npz")], "expected 648-d embeddings of this model"
    if case == "top_k_zero":
        np.savez(root / "gallery.npz", names=np.array(["a/1.png"]), embeddings=np.ones((1, 648), np.float32))
        return base + ["--gallery", str(root / "gallery.npz"), "--top-k", "0"], "--top-k 0: expected"
    if case == "no_output_no_gallery":
        return base, "expected --output FILE.npz, --gallery FILE.npz or both"
    if case == "output_parent_is_a_file":  # refused before any image is embedded
        (root / "afile").write_text("a file where the output folder should be")
        return base + ["--output", str(root / "afile" / "e.npz")], "expected " + str(root / "afile") + " to be a folder"
    if case == "model_plain_pickle":  # torch warns about a protocol-4 pickle before refusing it
        import pickle

        (root / "old.pt").write_bytes(pickle.dumps({"model": {"w": [1.0]}}, protocol=4))
        return ["--model", str(root / "old.pt"), "--images", str(images)] + out, "a plain pickle, not a file torch.save"
    if case == "output_is_folder":
        (root / "out").mkdir()
        return base + ["--output", str(root / "out")], "out: expected a file name to write; it is a folder"
    raise AssertionError(case)


BAD_CASES = [
    "model_missing", "model_suffix", "model_not_onnx", "model_not_checkpoint", "images_missing", "images_empty",
    "landmarks_missing", "landmarks_malformed", "landmarks_wrong_count", "landmarks_unknown_image",
    "landmarks_duplicate", "landmarks_same_point", "landmarks_empty", "not_112_without_landmarks",
    "undecodable_image", "gallery_not_npz", "gallery_wrong_arrays", "gallery_other_model", "top_k_zero",
    "no_output_no_gallery", "output_is_folder", "output_parent_is_a_file", "model_plain_pickle",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, onnx_model, tmp_path, capsys):
    argv, needle = _bad_case(case, tmp_path, onnx_model[0])
    before = sorted(tmp_path.rglob("*"))
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()  # the error line alone: no progress bar, runtime line or warning
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], captured.err
    assert captured.out == ""
    assert sorted(tmp_path.rglob("*")) == before  # no output, no temporary file left behind
