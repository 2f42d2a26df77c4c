"""The decoded cache (facerec-data cache): build, kill and rerun, verify, stale-cache refusal; training from it
(same batches as the JPEG path, a resumed run bit for bit, --cache-on-device); the batch augmentation's rates
and ranges."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facerec.cli.data import main as data_main
from facerec.cli.train import main as train_main
from facerec.data.augment import (
    CROP_P,
    CROP_RATIO,
    CROP_SCALE,
    FLIP_P,
    LOWRES_P,
    LOWRES_SIDE,
    PHOTOMETRIC_P,
    PHOTOMETRIC_STRENGTH,
    AdaFaceAugment,
)
from facerec.data.batch_augment import BatchAdaFaceAugment
from facerec.data.cache import cache_folder, open_cache
from facerec.data.cached_dataset import CachedFaceDataset
from facerec.data.datasets import FaceDataset, FacePack
from facerec.model.heads import create_head
from facerec.model.space import IResNetSpace
from facerec.train.config import TrainConfig
from facerec.train.loop import train_model
from nas_core.genotype import Genotype

TINY = Genotype.uniform(4, 4)
STALE = "stale cache: rebuild with facerec-data cache"


def _fresh_pack(tmp_path: Path, identities: int = 6, per_identity: int = 8) -> Path:
    from facerec.data.demo import demo_pack

    return demo_pack(tmp_path / "pack", num_identities=identities, images_per_identity=per_identity)


@pytest.fixture
def cached_pack(tmp_path) -> Path:
    pack = _fresh_pack(tmp_path)
    assert data_main(["cache", str(pack), "--workers", "1"]) == 0
    return pack


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# --- the cache files ---------------------------------------------------------------------------------

def test_cache_holds_every_image_decoded_with_its_label(cached_pack, capsys):
    pack = FacePack(cached_pack)
    cache = open_cache(pack)
    keys = pack.image_keys()
    assert cache.images.shape == (len(keys), 112, 112, 3) and cache.images.dtype == np.uint8
    for row in (0, 17, len(keys) - 1):
        assert np.array_equal(cache.images[row], pack.image(keys[row]))
        assert cache.labels[row] == pack.label(keys[row])
    meta = json.loads((cache_folder(pack) / "cache.json").read_text())
    assert meta["count"] == len(keys) and meta["rec_size"] == pack.reader.rec_path.stat().st_size
    assert not (cache_folder(pack) / "progress.json").exists()
    capsys.readouterr()
    before = (cache_folder(pack) / "images.u8").stat().st_mtime_ns
    assert data_main(["cache", str(cached_pack)]) == 0  # up to date: nothing rewritten
    assert "matches train.rec already" in capsys.readouterr().out
    assert (cache_folder(pack) / "images.u8").stat().st_mtime_ns == before


def test_verify_and_inspect_on_a_good_and_a_stale_cache(cached_pack, capsys):
    assert data_main(["verify", str(cached_pack)]) == 0
    assert "decoded cache: matches every image" in capsys.readouterr().out
    assert data_main(["inspect", str(cached_pack), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cache"]["state"] == "complete" and info["cache"]["bytes"] == 48 * 112 * 112 * 3
    rec = cached_pack / "train.rec"
    os.utime(rec, ns=(rec.stat().st_atime_ns, rec.stat().st_mtime_ns + 10**9))  # the .rec rewritten since
    assert data_main(["verify", str(cached_pack)]) == 2
    line = _error_line(capsys)
    assert f"{cache_folder(FacePack(cached_pack)) / 'cache.json'}: {STALE} {cached_pack}" in line
    assert data_main(["inspect", str(cached_pack), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cache"]["state"] == "stale"


def test_verify_catches_a_changed_row(cached_pack, capsys):
    images = cache_folder(FacePack(cached_pack)) / "images.u8"
    with open(images, "r+b") as f:
        f.seek(112 * 112 * 3 * 5 + 100)
        f.write(b"\x00\xff\x00")
    assert data_main(["verify", str(cached_pack)]) == 2
    assert "images.u8: row 5: expected the decoded image and label" in _error_line(capsys)


def test_training_on_a_stale_cache_exits_2_with_the_rebuild_line(cached_pack, tmp_path, capsys):
    genotype = tmp_path / "genotype.json"
    genotype.write_text(json.dumps(TINY.to_dict()))
    rec = cached_pack / "train.rec"
    os.utime(rec, ns=(rec.stat().st_atime_ns, rec.stat().st_mtime_ns + 10**9))
    args = ["--genotype", str(genotype), "--data", str(cached_pack), "--output", str(tmp_path / "out"),
            "--epochs", "1", "--batch-size", "8", "--workers", "0", "--holdout-ids", "2", "--no-progress"]
    assert train_main(args) == 2
    assert f"{STALE} {cached_pack}" in _error_line(capsys)
    assert train_main(args[:5] + [str(tmp_path / "out2")] + args[6:] + ["--no-cache"]) == 0  # opting out works


def test_an_interrupted_build_rerun_continues_where_it_stopped(tmp_path, monkeypatch):
    from facerec.data import cache as cache_module
    from nas_core import faults

    pack = _fresh_pack(tmp_path)
    writes = []

    def interrupt_third(path):
        writes.append(path.name)
        if len(writes) == 3:
            raise KeyboardInterrupt  # Ctrl-C while the 3rd progress record is being written

    monkeypatch.setattr(faults, "in_write", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        cache_module.build_cache(FacePack(pack), chunk=10, progress=False)
    monkeypatch.undo()
    folder = cache_folder(FacePack(pack))
    assert json.loads((folder / "progress.json").read_text())["done"] == 20 and not (folder / "cache.json").exists()
    decoded = []
    monkeypatch.setattr(cache_module, "_decode", lambda p, key, size: decoded.append(key) or p.image(key))
    cache_module.build_cache(FacePack(pack), chunk=10, progress=False)
    keys = FacePack(pack).image_keys()
    assert decoded == keys[20:]  # the rows already written are not decoded again
    cache = open_cache(FacePack(pack))
    assert all(np.array_equal(cache.images[i], FacePack(pack).image(k)) for i, k in enumerate(keys))


@pytest.mark.slow
def test_a_killed_build_rerun_completes_to_the_same_cache(tmp_path):
    pack = _fresh_pack(tmp_path)
    command = [sys.executable, "-m", "facerec.cli.data", "cache", str(pack), "--chunk", "10", "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FACENAS_FAIL_IN_WRITE": "progress.json:3"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 137 and "fault injection: killed" in proc.stderr, proc.stderr[-2000:]
    folder = cache_folder(FacePack(pack))
    assert not (folder / "cache.json").exists() and (folder / "images.u8.partial").exists()
    assert json.loads((folder / "progress.json").read_text())["done"] == 20  # the 3rd record never landed
    assert open_cache(FacePack(pack)) is None  # a partial cache is not used
    env.pop("FACENAS_FAIL_IN_WRITE")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    resumed = np.array(open_cache(FacePack(pack)).images)
    shutil.rmtree(folder)
    assert data_main(["cache", str(pack), "--workers", "2"]) == 0
    assert np.array_equal(resumed, open_cache(FacePack(pack)).images)


# --- training from the cache ---------------------------------------------------------------------------

def _train(dataset, epochs: int, batch: int = 8, **kwargs):
    torch.manual_seed(0)
    backbone = IResNetSpace(embedding_size=64).build(TINY)
    head = create_head("cosface", 64, dataset.num_classes)
    config = TrainConfig(epochs=epochs, batch_size=batch, lr=0.05, workers=0, checkpoint_every=0)
    return train_model(backbone, head, dataset, config, progress=False, verbose=False, **kwargs), backbone


def test_without_augmentation_the_cache_trains_exactly_as_the_jpeg_path(cached_pack):
    pack = FacePack(cached_pack)
    jpeg, _ = _train(FaceDataset(pack, normalize=False), epochs=2)
    cached, _ = _train(CachedFaceDataset(open_cache(pack), pack), epochs=2)
    assert [h["loss"] for h in cached.history] == [h["loss"] for h in jpeg.history]


def test_cache_on_device_gives_the_same_training_and_falls_back_with_a_warning(cached_pack, monkeypatch, caplog):
    pack = FacePack(cached_pack)
    cache = open_cache(pack)
    from_disk, a = _train(CachedFaceDataset(cache, pack, transform=BatchAdaFaceAugment()), epochs=2)
    held_set = CachedFaceDataset(cache, pack, transform=BatchAdaFaceAugment(), on_device=True)
    held, b = _train(held_set, epochs=2)
    assert held_set._held["images"] is not None and held_set._held["images"].shape[0] == len(held_set)
    assert [h["loss"] for h in held.history] == [h["loss"] for h in from_disk.history]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    import facerec.data.cached_dataset as cached_dataset

    monkeypatch.setattr(cached_dataset, "_free_bytes", lambda device: 1000)
    too_big = CachedFaceDataset(cache, pack, transform=BatchAdaFaceAugment(), on_device=True)
    with caplog.at_level("WARNING", logger="facerec"):
        fallback, _ = _train(too_big, epochs=2)
    warnings = [r.getMessage() for r in caplog.records if "--cache-on-device" in r.getMessage()]
    assert len(warnings) == 1 and "reading batches from" in warnings[0]
    assert [h["loss"] for h in fallback.history] == [h["loss"] for h in from_disk.history]


def test_rank_shares_of_a_held_cache_partition_the_images(cached_pack):
    pack = FacePack(cached_pack)
    data = CachedFaceDataset(open_cache(pack), pack, on_device=True)
    orders = [data.epoch_indices(3, 1, rank, 3) for rank in range(3)]
    assert all(len(o) == len(data) // 3 for o in orders)
    assert len(set().union(*orders)) == 3 * (len(data) // 3)  # disjoint
    assert [sorted(o) for o in orders] == [sorted(data.epoch_indices(3, 2, r, 3)) for r in range(3)]  # fixed share
    assert orders[0] != data.epoch_indices(3, 2, 0, 3)  # reshuffled per epoch
    assert CachedFaceDataset(open_cache(pack), pack).epoch_indices(3, 1, 0, 3) is None  # DistributedSampler then


@pytest.mark.slow
def test_killed_cached_training_resumes_to_the_uninterrupted_weights(cached_pack, tmp_path):
    genotype = tmp_path / "genotype.json"
    genotype.write_text(json.dumps(TINY.to_dict()))

    def args(out):
        return ["-m", "facerec.cli.train", "--genotype", str(genotype), "--data", str(cached_pack), "--output",
                str(out), "--epochs", "2", "--batch-size", "8", "--lr", "0.05", "--workers", "0", "--holdout-ids",
                "2", "--no-progress", "--checkpoint-every", "2", "--head", "cosface"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = subprocess.run([sys.executable, *args(tmp_path / "straight")], env=env, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = subprocess.run([sys.executable, *args(tmp_path / "killed")], capture_output=True, text=True,
                            env={**env, "FACENAS_FAIL_AFTER_STEPS": "7"})  # mid-epoch 2 (4 steps per epoch)
    assert killed.returncode == 137, killed.stderr[-2000:]
    resumed = subprocess.run([sys.executable, *args(tmp_path / "killed"), "--resume", str(tmp_path / "killed")],
                             env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in (tmp_path / "killed" / "train.log").read_text()
    want = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    got = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
    assert all(torch.equal(got["model"][k], v) for k, v in want["model"].items())


@pytest.mark.slow
def test_orl_loss_curve_from_the_cache_matches_the_jpeg_path(orl_dir, tmp_path):
    """ORL (40 identities x 10), packed with facerec-data pack: a few epochs' losses of the two paths (same init,
    same batch order, different augmentation draws) agree within noise and both go down."""
    pack_dir = tmp_path / "orl"
    assert data_main(["pack", str(orl_dir), str(pack_dir)]) == 0
    assert data_main(["cache", str(pack_dir), "--workers", "1"]) == 0
    pack = FacePack(pack_dir)
    jpeg, _ = _train(FaceDataset(pack, transform=AdaFaceAugment(), normalize=False), epochs=4, batch=32)
    cached, _ = _train(CachedFaceDataset(open_cache(pack), pack, transform=BatchAdaFaceAugment()), epochs=4, batch=32)
    a, b = (np.array([h["loss"] for h in o.history]) for o in (jpeg, cached))
    assert a[-1] < 0.9 * a[0] and b[-1] < 0.9 * b[0], (a, b)
    assert np.all(np.abs(a - b) <= 0.1 * a), (a, b)


# --- the batch augmentation ------------------------------------------------------------------------------

def _within(rate: float, p: float, n: int) -> bool:
    return abs(rate - p) <= 5 * math.sqrt(p * (1 - p) / n)  # 5 sigma: fails by chance about once in 3.5 million


def test_batch_augment_draws_have_the_per_image_rates_and_ranges():
    n, size = 20000, 112
    draws = BatchAdaFaceAugment().draw(n, size, size, torch.Generator().manual_seed(0))
    for mask, p in ((draws.crop, CROP_P), (draws.lowres, LOWRES_P), (draws.photometric, PHOTOMETRIC_P),
                    (draws.flip, FLIP_P)):
        assert _within(mask.float().mean().item(), p, n), (mask.float().mean(), p)
    top, left, h, w = draws.box.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= size).all() and (left + w <= size).all()
    area = (h * w).float() / size**2
    aspect = w.float() / h.float()
    slack = 2.5 / math.sqrt(CROP_SCALE[0]) / size  # w and h are rounded to whole pixels
    assert area.min() >= CROP_SCALE[0] - 3 * slack and area.max() <= CROP_SCALE[1]
    assert aspect.min() >= CROP_RATIO[0] - 4 * slack and aspect.max() <= CROP_RATIO[1] + 4 * slack
    assert area.min() < CROP_SCALE[0] + 0.02 and area.max() > 0.98  # the whole range is used
    side = draws.side.float() / size
    assert side.min() >= math.floor(LOWRES_SIDE[0] * size) / size and side.max() <= LOWRES_SIDE[1]
    assert abs(side.mean().item() - sum(LOWRES_SIDE) / 2) < 0.01
    low, high = 1 - PHOTOMETRIC_STRENGTH, 1 + PHOTOMETRIC_STRENGTH
    assert draws.factors.min() >= low and draws.factors.max() <= high and abs(draws.factors.mean() - 1) < 0.01
    assert (draws.order.sort(dim=1).values == torch.arange(3)).all()  # a permutation per image
    assert set(draws.modes.unique().tolist()) == {0, 1, 2, 3, 4}


def test_batch_augment_applies_what_it_drew():
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(1, 256, (256, 3, 112, 112), dtype=torch.uint8, generator=generator)
    augment = BatchAdaFaceAugment()
    draws = augment.draw(256, 112, 112, generator)
    out = augment.apply(images, draws)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    untouched = ~(draws.crop | draws.lowres | draws.photometric | draws.flip)
    assert torch.equal(out[untouched], images[untouched])
    only_flip = draws.flip & ~(draws.crop | draws.lowres | draws.photometric)
    assert torch.equal(out[only_flip], images[only_flip].flip(-1))
    only_crop = draws.crop & ~(draws.lowres | draws.photometric | draws.flip)  # later steps may fill the border
    assert only_crop.sum() > 10
    for i in only_crop.nonzero().squeeze(1).tolist():
        top, left, h, w = draws.box[i].tolist()
        outside = torch.ones(112, 112, dtype=torch.bool)
        outside[top:top + h, left:left + w] = False
        assert (out[i][:, outside] == 0).all()
    again = augment(images, torch.Generator().manual_seed(5))
    assert torch.equal(again, augment(images, torch.Generator().manual_seed(5)))
    assert not torch.equal(again, augment(images, torch.Generator().manual_seed(6)))


def test_per_image_cpu_path_does_what_the_batched_gpu_path_does():
    """The CPU's per-image apply (OpenCV, NumPy) and the GPU's batched torch apply, given the same draws, on real-
    looking faces: crop and flip identical, photometric within one grey level (float rounding), low resolution
    close (OpenCV's and torch's interpolations differ in detail; torch has no Lanczos)."""
    from facerec.data.batch_augment import apply_batched, apply_per_image
    from facerec.data.demo import demo_identities

    faces = np.stack([images[0] for images in demo_identities(128, 1, seed=3)])
    nhwc = torch.from_numpy(faces)
    draws = BatchAdaFaceAugment().draw(len(faces), 112, 112, torch.Generator().manual_seed(2))
    cpu = apply_per_image(nhwc.permute(0, 3, 1, 2), draws)
    gpu = apply_batched(nhwc.permute(0, 3, 1, 2).contiguous(), draws)
    assert cpu.is_contiguous() and cpu.dtype == torch.uint8 and cpu.shape == gpu.shape
    geometric = ~(draws.lowres | draws.photometric)
    assert geometric.sum() > 50 and (draws.flip & geometric).sum() > 10 and (draws.crop & geometric).sum() > 5
    assert torch.equal(cpu[geometric], gpu[geometric])
    photometric = draws.photometric & ~draws.lowres
    assert photometric.sum() > 10
    assert (cpu[photometric].int() - gpu[photometric].int()).abs().max() <= 1
    lowres = draws.lowres.nonzero().squeeze(1)
    assert len(lowres) > 10
    between = (cpu[lowres].float() - gpu[lowres].float()).abs().mean(dim=(1, 2, 3))  # mean |difference| per image
    assert between.mean() < 2 and between.max() < 8, between
    small = lowres[draws.side[lowres] < 40]  # strongly blurred: far from the input, in both paths alike
    assert len(small) >= 3
    changed = (cpu[small].float() - nhwc[small].permute(0, 3, 1, 2).float()).abs().mean(dim=(1, 2, 3))
    assert (changed > between[draws.side[lowres] < 40] + 1).all(), (changed, between)


def test_batched_low_resolution_equals_torch_resizes_image_by_image():
    """The GPU path's low resolution, two matrix products for the whole batch, against torch's own resizes one
    image at a time (down, to uint8, up, to uint8), every mode pair and sides from 1 to 112: the same up to float
    rounding (a grey level at a .5 boundary, in few pixels)."""
    from facerec.data.batch_augment import _MODES, _low_resolution, _resize, _to_uint8
    from facerec.data.demo import demo_identities

    count = len(_MODES) ** 2
    faces = torch.from_numpy(np.stack([images[0] for images in demo_identities(count, 1, seed=4)]))
    images = faces.permute(0, 3, 1, 2).contiguous()
    modes = torch.tensor([(down, up) for down in range(len(_MODES)) for up in range(len(_MODES))])
    side = torch.tensor([1, 112] + torch.randint(2, 112, (count - 2,), generator=torch.Generator().manual_seed(0))
                        .tolist())
    batched = _low_resolution(images, side, modes)
    for i in range(count):
        s, (down, up) = int(side[i]), modes[i].tolist()
        small = _to_uint8(_resize(images[i:i + 1].float(), (s, s), down))
        expected = _to_uint8(_resize(small.float(), (112, 112), up))[0]
        difference = (batched[i].int() - expected.int()).abs()
        assert difference.max() <= 1 and (difference > 0).float().mean() < 0.01, (s, down, up)


def test_normalize_of_a_tensor_is_the_numpy_formula_and_leaves_its_input_alone():
    from eval_protocols.embed import normalize

    levels = np.arange(256, dtype=np.uint8)
    assert np.array_equal(normalize(torch.from_numpy(levels)).numpy(), normalize(levels))
    assert np.array_equal(normalize(levels), (levels.astype(np.float32) / 255 - 0.5) / 0.5)
    pixels = torch.arange(256, dtype=torch.float32)
    normalize(pixels)
    assert torch.equal(pixels, torch.arange(256, dtype=torch.float32))


@pytest.mark.parametrize("damage", ["labels_missing", "labels_object_array", "labels_float", "images_unreadable"])
def test_inspect_calls_complete_only_what_verify_and_training_open(cached_pack, capsys, damage):
    # inspect --json said "complete" whenever cache.json matched, while verify and training refused the cache.
    labels = cache_folder(FacePack(cached_pack)) / "labels.npy"
    if damage == "labels_missing":
        labels.unlink()
    elif damage == "images_unreadable":
        (labels.parent / "images.u8").unlink()
        (labels.parent / "images.u8").mkdir()
    else:
        values = np.load(labels)
        np.save(labels, np.asarray(values.tolist(), dtype=object) if damage == "labels_object_array"
                else values.astype(np.float64), allow_pickle=True)
    assert data_main(["inspect", str(cached_pack), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cache"]["state"] == "stale"
    assert data_main(["verify", str(cached_pack)]) == 2
    assert "stale cache: rebuild with facerec-data cache" in _error_line(capsys)
