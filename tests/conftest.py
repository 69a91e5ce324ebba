"""Shared fixtures: an isolated cache, and tiny data and models that train in seconds."""

from __future__ import annotations

import pytest

from benchbd.data.sources import DataSizes, load_data

TINY = DataSizes(train=1024, clean=256, test=200, validation=200)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test writes its datasets and checkpoints into one throw-away cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("BENCHBD_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_data():
    return load_data("synthetic", TINY, image_size=32)
