"""--recipe auto|adaface|small: which recipe a pack gets, and that AdaFace's is the old recipe unchanged."""

from __future__ import annotations

import argparse
import logging

import cv2
import numpy as np
import pytest
import torch

from facerec.data.recordio import IRHeader, RecordWriter, pack_record
from facerec.errors import FaceRecError
from facerec.train.config import TrainConfig
from facerec.train.recipe import (
    ADAFACE_MIN_IMAGES,
    MIN_STEPS_PER_EPOCH,
    add_recipe_args,
    choose_recipe,
    recipe_from_args,
    small_batch_size,
)


def _metadata_pack(root, identities: int, images_per_identity: int):
    """An InsightFace face set whose index lists identities x images_per_identity image keys that all
    point at one stored face: the pack's metadata of a large set in a few kilobytes."""
    root.mkdir(parents=True, exist_ok=True)
    ok, jpeg = cv2.imencode(".jpg", np.full((112, 112, 3), 128, np.uint8))
    assert ok
    images = identities * images_per_identity
    first_identity = images + 1
    with RecordWriter(root / "train.rec") as writer:
        writer.write(0, pack_record(IRHeader(2, [first_identity, first_identity + identities])))
        image_offset = writer.write(1, pack_record(IRHeader(0, 0.0, 1, 0), jpeg.tobytes()))
        offsets = {0: 0, 1: image_offset}
        for i in range(identities):
            key = first_identity + i
            start = 1 + i * images_per_identity
            offsets[key] = writer.write(key, pack_record(IRHeader(2, [start, start + images_per_identity], key, 0)))
    lines = [f"{k}\t{offsets.get(k, image_offset)}\n" for k in range(first_identity + identities)]
    (root / "train.idx").write_text("".join(lines))
    (root / "property").write_text(f"{identities},112,112\n")
    return root


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_recipe_args(parser)
    return parser.parse_args(list(argv))


def test_auto_takes_adaface_unchanged_on_a_100k_image_pack(tmp_path):
    from facerec.data.run_data import prepare_data

    pack = _metadata_pack(tmp_path / "big", identities=1000, images_per_identity=100)  # 100,000 images
    data = prepare_data(pack, tmp_path / "out", holdout_ids=2, need_val=False)
    assert data.info["pack_images"] == ADAFACE_MIN_IMAGES
    recipe = recipe_from_args(_args(), data.info, logging.getLogger("test"))
    assert recipe.name == "adaface"
    assert "auto" in recipe.reasons[0] and "100,000" in recipe.reasons[0]
    config = recipe.train_config(epochs=26, seed=0)
    before = TrainConfig()  # the trainer's settings before there were recipes: AdaFace's, ARCHITECTURE §4
    for name in TrainConfig.__dataclass_fields__:
        if name != "recipe":
            assert getattr(config, name) == getattr(before, name), name
    assert config.lr_milestones() == [12, 20, 24]


def test_auto_takes_the_small_recipe_below_100k_images(tmp_path):
    from facerec.data.run_data import prepare_data

    pack = _metadata_pack(tmp_path / "smaller", identities=999, images_per_identity=100)  # 99,900 images
    data = prepare_data(pack, tmp_path / "out", holdout_ids=2, need_val=False)
    recipe = recipe_from_args(_args(), data.info)
    assert recipe.name == "small"
    assert recipe.batch_size == 32 and data.info["train_images"] // recipe.batch_size >= MIN_STEPS_PER_EPOCH
    assert recipe_from_args(_args("--recipe", "adaface"), data.info).name == "adaface"


@pytest.mark.parametrize("images, batch", [(300, 16), (1599, 16), (1600, 32), (6400, 32), (500_000, 32)])
def test_small_batch_gives_enough_steps_per_epoch(images, batch):
    assert small_batch_size(images) == batch
    assert images // batch >= MIN_STEPS_PER_EPOCH or batch == 16


def test_explicit_flags_override_the_recipe_and_say_so():
    recipe = recipe_from_args(_args("--recipe", "small", "--batch-size", "256", "--head", "arcface"),
                              {"pack_images": 5000, "train_images": 4500, "train_identities": 900})
    assert (recipe.batch_size, recipe.head, recipe.head_options) == (256, "arcface", {})
    assert "given on the command line: batch_size 256, head arcface" in recipe.reasons[-1]
    config = recipe.train_config(epochs=3)
    assert config.recipe["reasons"] == list(recipe.reasons)


def test_unknown_recipe_is_a_user_error():
    with pytest.raises(FaceRecError, match="--recipe big: expected one of auto, adaface, small"):
        choose_recipe("big", 10)


def test_schedule_warms_up_then_decays_and_leaves_adaface_to_its_milestones():
    from facerec.train.recipe import scheduled_lr

    adaface = TrainConfig(epochs=26)  # AdaFace's step decay, unchanged: ×0.1 at epochs 12, 20, 24
    assert [scheduled_lr(adaface, epoch * 100, 100) for epoch in (0, 11, 12, 20, 24)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.001, 0.0001])
    config = TrainConfig(epochs=4, lr=0.1, warmup_epochs=1.0, schedule="cosine")
    lrs = [scheduled_lr(config, step, 10) for step in range(40)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)  # linear over the first epoch
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 0.001  # cosine down to ~0
    short = TrainConfig(epochs=1, lr=0.1, warmup_epochs=1.0, schedule="cosine")
    assert scheduled_lr(short, 4, 20) == pytest.approx(0.1)  # warm-up capped at a quarter of a 1-epoch trial
    stepped = TrainConfig(epochs=26, lr=0.1, warmup_epochs=1.0, schedule="step")
    assert scheduled_lr(stepped, 5 * 10, 10) == pytest.approx(0.1)
    assert scheduled_lr(stepped, 12 * 10, 10) == pytest.approx(0.01)
    assert scheduled_lr(stepped, 24 * 10, 10) == pytest.approx(0.0001)


def test_facerec_train_logs_and_stores_the_recipe_and_each_epochs_collapse_numbers(tiny_pack, tmp_path):
    import json

    from facerec.cli.train import main as train_main
    from nas_core.genotype import Genotype

    genotype = tmp_path / "genotype.json"
    genotype.write_text(json.dumps({**Genotype.uniform(4, 4).to_dict(), "space": {"embedding_size": 32}}))
    out = tmp_path / "run"
    assert train_main(["--genotype", str(genotype), "--data", str(tiny_pack), "--output", str(out), "--epochs", "2",
                       "--holdout-ids", "0", "--workers", "0", "--device", "cpu", "--no-progress"]) == 0
    log = (out / "train.log").read_text()
    assert "recipe small: batch 16" in log and "auto: the pack holds 64 images, < 100,000" in log
    assert "embeddings (64 training images): mean-norm" in log  # no verification sets: training faces
    metrics = json.loads((out / "metrics.json").read_text())
    for epoch in metrics["epochs"]:
        health = epoch["embeddings"]
        assert 0.0 <= health["mean_norm"] <= 1.0 and 1.0 <= health["effective_rank"] <= health["dim"] == 32
    assert metrics["train"]["recipe"]["name"] == "small" and metrics["run"]["head"] == "cosface"
    ckpt = torch.load(out / "model.pt", weights_only=True)
    train = ckpt["config"]["train"]
    assert (train["batch_size"], train["schedule"], train["head"]) == (16, "cosine", "cosface")
    assert train["head_options"]["s"] == pytest.approx(2.75, abs=0.01)  # √2·ln(8 identities − 1)
    assert train["recipe"]["reasons"][0].startswith("auto: the pack holds 64 images")
