"""Shared test fixtures: paths to the real data in ../shared/data."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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
