"""Classification datasets: IDX and CIFAR readers, the stratified split, augmentation, bad files."""

import gzip
import logging
import pickle
import struct

import numpy as np
import pytest
import torch

from nas_core.classify.datasets import (
    DATASETS,
    Augment,
    ClassificationData,
    load_dataset,
    read_idx,
)
from nas_core.cli.search import main as search_main
from nas_core.errors import NasError

MNIST_T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # from the data README


def _write_idx(path, array: np.ndarray, gz: bool = True) -> None:
    magic = 0x800 | array.ndim
    raw = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def test_idx_reader_on_real_mnist(mnist_dir):
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz", 2051)
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz", 2049)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == MNIST_T10K_COUNTS
    assert images.max() == 255 and images[0].sum() > 0


def test_idx_reader_checks_magic_and_size(mnist_dir, tmp_path):
    with pytest.raises(NasError, match="expected IDX magic 2049, got 2051"):
        read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz", 2049)
    short = tmp_path / "t10k-labels-idx1-ubyte"
    short.write_bytes(struct.pack(">II", 2049, 10) + bytes(7))
    with pytest.raises(NasError, match="expected 10 data bytes"):
        read_idx(short, 2049)
    with pytest.raises(NasError, match="file not found"):
        read_idx(tmp_path / "nothing", 2049)


def test_mnist_t10k_only_is_split_stratified_and_seeded(mnist_dir, caplog):
    with caplog.at_level(logging.INFO, logger="nas_core"):
        data = load_dataset("mnist", mnist_dir)
    assert "8000 train / 2000 test" in caplog.text
    assert (len(data.train_labels), len(data.val_labels), len(data.test_labels)) == (7200, 800, 2000)
    # Stratified: every class keeps its share in every split (within one image of rounding).
    counts = np.array(MNIST_T10K_COUNTS)
    for labels, share in ((data.test_labels, 0.2), (data.val_labels, 0.08)):
        assert np.abs(np.bincount(labels.numpy(), minlength=10) - counts * share).max() <= 1.5
    again = load_dataset("mnist", mnist_dir)
    assert torch.equal(again.val_images, data.val_images)
    other = load_dataset("mnist", mnist_dir, split_seed=1)
    assert not torch.equal(other.val_images, data.val_images)
    paper = load_dataset("mnist", mnist_dir, rank_on="test")  # the paper ranks on test: no val split
    assert len(paper.val_labels) == 0 and len(paper.train_labels) == 8000


def test_emnist_balanced_names_and_full_split(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 94), ("test", 47)):
        _write_idx(tmp_path / f"emnist-balanced-{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"emnist-balanced-{split}-labels-idx1-ubyte", np.arange(n) % 47, gz=False)
    data = load_dataset("emnist", tmp_path, val_fraction=0.5)
    assert data.num_classes == 47 and data.in_channels == 1
    assert (len(data.train_labels), len(data.val_labels), len(data.test_labels)) == (47, 47, 47)
    assert sorted(data.val_labels.tolist()) == list(range(47))  # stratified: one image of each class


def _write_cifar_batch(path, images: np.ndarray, labels, key: bytes) -> None:
    batch = {b"batch_label": b"synthetic", key: list(labels), b"data": images.reshape(len(images), -1)}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def test_cifar10_pickle_reader_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
        batches[name] = images
        _write_cifar_batch(folder / name, images, [i % 10 for i in range(20)], b"labels")
    raw = DATASETS.create("cifar10", root=tmp_path)
    assert raw.train_images.shape == (100, 3, 32, 32) and raw.test_images.shape == (20, 3, 32, 32)
    # Row layout of the python batches: 1024 red, then green, then blue values, each row-major.
    flat = batches["data_batch_2"][3].reshape(-1)
    assert int(raw.train_images[23, 1, 5, 7]) == int(flat[1024 + 5 * 32 + 7])
    assert raw.augment.flip and raw.augment.cutout == 16
    data = load_dataset("cifar10", tmp_path / "cifar-10-batches-py")  # the folder itself works too
    assert len(data.val_labels) == 10 and sorted(data.val_labels.tolist()) == list(range(10))


def test_cifar100_fine_labels_and_bad_pickle(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images = np.zeros((200, 3, 32, 32), dtype=np.uint8)
    _write_cifar_batch(folder / "train", images, [i % 100 for i in range(200)], b"fine_labels")
    (folder / "test").write_bytes(b"not a pickle")
    with pytest.raises(NasError, match=r"test: expected a CIFAR python pickle batch"):
        load_dataset("cifar100", tmp_path)
    _write_cifar_batch(folder / "test", images[:100], list(range(100)), b"fine_labels")
    with pytest.raises(NasError, match="expected at least one held-out image per class"):
        load_dataset("cifar100", tmp_path)  # 10% of 200 images cannot hold 100 classes
    assert load_dataset("cifar100", tmp_path, val_fraction=0.5).num_classes == 100


def test_augmentation_is_a_padded_crop_with_cutout():
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    data = ClassificationData("t", images, torch.zeros(16, dtype=torch.long), images[:0], images[:0, 0, 0, 0].long(),
                              images, torch.zeros(16, dtype=torch.long), 10, (0.5,), (0.25,),
                              Augment(crop=32, pad=4, flip=False, cutout=16))
    out = data.augment_batch(images, data.draw_augment(16, torch.Generator().manual_seed(0)))
    assert out.shape == (16, 1, 32, 32)  # grayscale 28x28 trains on 32x32 crops (reference)
    padded = data.normalize(torch.nn.functional.pad(images.float() / 255, (4, 4, 4, 4)))
    for i in range(16):
        kept = out[i, 0] != 0  # cutout zeroes a square after normalisation
        assert (~kept).sum() > 0
        matches = [
            (oy, ox) for oy in range(5) for ox in range(5)
            if torch.allclose(padded[i, 0, oy:oy + 32, ox:ox + 32][kept], out[i, 0][kept])
        ]
        assert matches, f"sample {i} is not a crop of the padded image"


def test_digits_default_runs_anywhere():
    data = load_dataset("digits")
    assert data.in_channels == 1 and data.num_classes == 10
    assert len(data.train_labels) + len(data.val_labels) + len(data.test_labels) == 1797


@pytest.mark.parametrize("case", ["unknown", "missing-root", "no-files", "bad-magic", "torn-gzip"])
def test_bad_data_exits_2_with_one_line(case, tmp_path, capsys, mnist_dir):
    root = tmp_path / "data"
    root.mkdir()
    dataset = "mnist"
    if case == "unknown":
        dataset = "imagenet"
    elif case == "missing-root":
        root = tmp_path / "absent"
    elif case == "bad-magic":
        (root / "t10k-images-idx3-ubyte.gz").write_bytes((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
        (root / "t10k-labels-idx1-ubyte.gz").write_bytes((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    elif case == "torn-gzip":
        data = (mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes()
        (root / "t10k-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])
        (root / "t10k-labels-idx1-ubyte.gz").write_bytes((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    code = search_main(["--dataset", dataset, "--data-root", str(root), "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    expected = {"unknown": "imagenet: unknown dataset", "missing-root": "absent: expected a folder",
                "no-files": "t10k-images-idx3-ubyte: expected mnist test IDX files",
                "bad-magic": "t10k-images-idx3-ubyte.gz: expected IDX magic 2051, got 2049",
                "torn-gzip": "t10k-images-idx3-ubyte.gz: expected a complete gzip file"}[case]
    assert expected in err[0]
    assert not (tmp_path / "run").exists()  # bad data fails before the run folder is made


@pytest.mark.parametrize("name", [n for n in DATASETS.list() if n != "digits"])
def test_every_file_dataset_names_what_it_expects(name, tmp_path):
    with pytest.raises(NasError, match="expected --data-root DIR"):
        load_dataset(name, None)
    with pytest.raises(NasError, match=r"expected .*(IDX files|batches folder)"):
        load_dataset(name, tmp_path)  # an empty folder: the message names the missing file or folder
