"""Shared test fixtures: paths to the real data in ../shared/data."""

import os
from pathlib import Path

import pytest
import torch

# CI runs from a fresh clone elsewhere: look beside the clone, then at the workplace's shared folder.
_CANDIDATES = [
    os.environ.get("FACENAS_SHARED_DATA", ""),
    str(Path(__file__).resolve().parents[2] / "shared" / "data"),
    "/work/shared/data",
]
SHARED_DATA = next((Path(c) for c in _CANDIDATES if c and Path(c).is_dir()), Path(_CANDIDATES[1]))


def _data_dir(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def seed_traces_dir() -> Path:
    return _data_dir("seed_traces")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return _data_dir("mnist_t10k")


@pytest.fixture(scope="session")
def orl_dir() -> Path:
    return _data_dir("orl_faces")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests run tiny CPU batches: intra-op threads gain nothing there and cost a lot (about 10x measured)
    when the two CI cores are shared with another process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> Path:
    """8 synthetic identities x 8 images, packed as an InsightFace RecordIO set."""
    from facerec.data.demo import demo_pack

    return demo_pack(tmp_path_factory.mktemp("pack"), num_identities=8, images_per_identity=8)
