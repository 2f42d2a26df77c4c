"""Shared test fixtures: paths to the real data in the shared data folder (tools/shared_data.py)."""

from pathlib import Path

import pytest
import torch

from tools.shared_data import shared_data_root

# $FACENAS_SHARED_DATA, else shared/data beside the repository (tools.shared_data); CI runs from a fresh clone
# elsewhere, so it then falls back to the workplace's shared folder.
_CANDIDATES = [shared_data_root(), Path("/work/shared/data")]
SHARED_DATA = next((c for c in _CANDIDATES if c.is_dir()), _CANDIDATES[0])


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


@pytest.fixture(scope="session")
def raw_faces_dir() -> Path:
    """Real unaligned colour photos (Pins, CelebA): ``pins/<Name>/*.jpg``, ``celeba/<id>/*.jpg``."""
    return _data_dir("raw_faces")


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
