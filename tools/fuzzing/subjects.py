"""The unmutated inputs of every fuzzed kind, small enough that one command over them takes well under a
second: a face pack, a .bin pack, an IJB-C folder, a TinyFace root, a trained tiny IResNet (model.pt,
last.pt, its .onnx), a face genotype result.json, a finished digits search run and an authors' trace.

``build(root)`` runs in a forked child (it trains and exports); the paths are fixed names under root.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

# A digits search cut at 6 trials (grow, prune and the first micro trials): ~4 s on one CPU thread.
SEARCH_ARGS = [
    "--d-min",
    "2",
    "--d-max",
    "3",
    "--w-max",
    "6",
    "--w-min",
    "4",
    "--e-min",
    "1",
    "--micro-epochs",
    "1",
    "--max-trials",
    "6",
    "--device",
    "cpu",
    "--threads",
    "1",
]
TRAIN_ARGS = [
    "--batch-size",
    "8",
    "--workers",
    "0",
    "--holdout-ids",
    "0",
    "--no-progress",
    "--seed",
    "0",
    "--device",
    "cpu",
]
TRACE_NAME = "fashionmnist_128.json"  # the shortest of the authors' traces


@dataclass(frozen=True)
class Subjects:
    root: Path

    @property
    def pack(self) -> Path:
        return self.root / "pack"

    @property
    def bins(self) -> Path:
        return self.root / "bins"

    @property
    def ijb(self) -> Path:
        return self.root / "ijb" / "IJBC"

    @property
    def tinyface(self) -> Path:
        return self.root / "tinyface"

    @property
    def genotype(self) -> Path:
        return self.root / "result.json"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def onnx(self) -> Path:
        return self.root / "model.onnx"

    @property
    def fast_onnx(self) -> Path:
        return self.root / "fast.onnx"

    @property
    def run(self) -> Path:
        return self.root / "digits-run"

    @property
    def trace(self) -> Path:
        return self.root / "trace.json"

    # --- the newer commands' inputs (tools/fuzzing/user_kinds.py) ---

    @property
    def faces(self) -> Path:
        """112x112 aligned faces, one folder per identity (the pack unpacked)."""
        return self.root / "faces"

    @property
    def gallery(self) -> Path:
        return self.root / "gallery.npz"

    @property
    def arcface_weights(self) -> Path:
        return self.root / "weights" / "backbone.pth"

    @property
    def adaface_weights(self) -> Path:
        return self.root / "weights" / "adaface_ir18.ckpt"

    @property
    def cached_pack(self) -> Path:
        return self.root / "cached_pack"


def build(argv: list[str]) -> int:
    """argv: [root, seed_traces_dir or ""]. Writes every subject under root."""
    import numpy as np
    import torch

    from facerec.cli.train import main as train_main
    from facerec.data.demo import demo_pack
    from nas_core.cli.search import main as search_main
    from nas_core.genotype import Genotype
    from tools.make_fixtures import make_ijb, make_tinyface, make_verification_pack

    subjects = Subjects(Path(argv[0]))
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    demo_pack(subjects.pack, num_identities=6, images_per_identity=4)
    (subjects.pack / "demo.json").unlink()  # not part of the InsightFace layout
    subjects.bins.mkdir(parents=True)
    make_verification_pack(subjects.bins / "lfw.bin", rng, pairs=12, identities=6)
    make_ijb(subjects.ijb, "IJBC", rng, subjects=4, templates_per_subject=2)
    make_tinyface(subjects.tinyface, rng, identities=4, distractors=4)
    subjects.genotype.write_text(
        json.dumps(
            {
                "genotype": Genotype.uniform(4, 2).to_dict(),
                "space": {"name": "iresnet", "embedding_size": 16},
            },
            indent=2,
        )
    )
    if (
        train_main(
            [
                "--genotype",
                str(subjects.genotype),
                "--data",
                str(subjects.pack),
                "--output",
                str(subjects.train),
                "--epochs",
                "1",
                *TRAIN_ARGS,
            ]
        )
        != 0
    ):
        return 1
    shutil.rmtree(subjects.train / "tb")
    _rewind(subjects.train / "last.pt")
    _export_onnx(subjects.train / "model.pt", subjects.onnx)
    _export_fast_onnx(subjects.fast_onnx)
    if search_main([*SEARCH_ARGS, "--output", str(subjects.run)]) != 0:
        return 1
    traces = Path(argv[1]) if len(argv) > 1 and argv[1] else None
    if traces is not None and (traces / TRACE_NAME).is_file():
        shutil.copyfile(traces / TRACE_NAME, subjects.trace)
    return _build_user_inputs(subjects)


def _build_user_inputs(subjects: Subjects) -> int:
    """Faces folder, its gallery, published-layout weights and a pack with its decoded cache."""
    from facerec.cli.data import main as data_main
    from facerec.cli.embed import main as embed_main
    from facerec.data.cache import build_cache
    from facerec.data.datasets import FacePack

    if data_main(["unpack", str(subjects.pack), str(subjects.faces)]) != 0:
        return 1
    if embed_main(["--model", str(subjects.fast_onnx), "--images", str(subjects.faces), "--output",
                   str(subjects.gallery), "--device", "cpu"]) != 0:
        return 1
    _write_weights(subjects)
    shutil.copytree(subjects.pack, subjects.cached_pack)
    build_cache(FacePack(subjects.cached_pack), progress=False)
    return 0


def _write_weights(subjects: Subjects) -> None:
    """An arcface_torch backbone.pth of IResNet-18 (float16, as published) and the same net as an AdaFace
    Lightning .ckpt (AdaFace's module names, MaxPool shortcut and affine-free embedding BN, a margin head)."""
    import re

    import torch

    from facerec.deploy.importers import _ADAFACE_BLOCK, _ADAFACE_OUTER, ARCH_BLOCKS
    from facerec.model.backbones import create_backbone

    torch.manual_seed(0)
    state = create_backbone("iresnet18").state_dict()
    subjects.arcface_weights.parent.mkdir(parents=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, subjects.arcface_weights)
    block_of = {mine: theirs for theirs, mine in _ADAFACE_BLOCK.items()}
    outer_of = {mine: theirs for theirs, mine in _ADAFACE_OUTER.items()}
    starts = [sum(ARCH_BLOCKS["iresnet18"][:s]) for s in range(4)]
    adaface = {}
    for key, value in state.items():
        if m := re.match(r"layer([1-4])\.(\d+)\.(.+)\.(\w+)$", key):
            stage, index, module, param = int(m[1]), int(m[2]), m[3], m[4]
            if (stage, index) == (1, 0) and module.startswith("downsample"):
                continue  # AdaFace pools there: no weights
            adaface[f"model.body.{starts[stage - 1] + index}.{block_of[module]}.{param}"] = value
        else:
            module, param = key.rsplit(".", 1)
            if module == "features" and param in ("weight", "bias"):
                continue  # AdaFace's embedding BatchNorm1d has no affine weights
            adaface[f"model.{outer_of[module]}.{param}"] = value
    adaface["head.kernel"] = torch.randn(512, 6)
    torch.save({"state_dict": adaface, "epoch": 3, "global_step": 120}, subjects.adaface_weights)


def _rewind(last: Path) -> None:
    """Set the finished run's counters and lr schedule back to the start of its one epoch, so a resume trains that
    epoch again with the saved weights and optimizer state (resuming a finished run would read them only)."""
    import torch

    from facerec.train.config import TrainConfig
    from facerec.train.recipe import scheduled_lr

    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    steps_per_epoch = ckpt["train_state"]["global_step"]  # of the subject's one epoch
    lr = scheduled_lr(TrainConfig.from_dict(ckpt["config"]["train"]), 0, steps_per_epoch)
    groups = ckpt["optimizer"]["param_groups"]
    for group in groups:
        group["lr"] = lr
    ckpt["scheduler"].update(last_epoch=0, _step_count=1, _last_lr=[lr] * len(groups))
    ckpt["train_state"].update(
        epoch=0,
        step_in_epoch=0,
        global_step=0,
        history=[],
        best_epoch=None,
        best_score=None,
        nan_steps=[],
        epoch_loss=[0.0, 0],
    )
    torch.save(ckpt, last)


def _export_fast_onnx(out: Path) -> None:
    """A fixed random conv net plus pooled pixels (as tests/test_eval_cli.py's): the model of the kinds that
    fuzz data, not the model; a tenth of the tiny IResNet's time per image."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 5, stride=4)
            self.pool = nn.AvgPool2d(8)

        def forward(self, x):
            return torch.cat([torch.relu(self.conv(x)).mean((2, 3)), self.pool(x).flatten(1)], 1)

    torch.manual_seed(0)
    torch.onnx.export(
        Net().eval(),
        torch.zeros(1, 3, 112, 112),
        str(out),
        input_names=["input"],
        dynamic_axes={"input": {0: "n"}},
        dynamo=False,
    )


def _export_onnx(checkpoint: Path, out: Path) -> None:
    import torch

    from facerec.model.checkpoint import load_backbone

    model, _ = load_backbone(checkpoint)
    torch.onnx.export(
        model,
        torch.zeros(1, 3, 112, 112),
        str(out),
        input_names=["input"],
        output_names=["embedding"],
        dynamic_axes={"input": {0: "n"}, "embedding": {0: "n"}},
        dynamo=False,
    )
