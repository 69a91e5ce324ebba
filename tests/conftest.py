"""Shared fixtures and helpers: an isolated cache, tiny data and models that train in seconds,
real-data folders written on the fly, and the built-in plugins the contract tests run."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from benchbd.core.registry import Registry
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data

TINY = DataSizes(train=1024, clean=256, test=200, validation=200)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The suite runs in parallel workers (pyproject: -n 2): one thread each, for this process
    # and the commands it starts, so that workers never wait on each other's OpenMP barriers.
    # torch is imported here, after benchbd, which pins the CPU kernels torch reads as it loads.
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


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


def builtin(registry: Registry) -> list[str]:
    """The names of the plugins this project ships (package `benchbd`): what the contract
    tests run, whatever third-party plugin package happens to be installed beside it."""
    return [name for name in registry.names() if registry.origin(name) == "benchbd"]


COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 30),
    "white": (240, 240, 240),
    "purple": (140, 30, 160),
}
CLASSES = list(COLOURS)


def picture(colour: str, seed: int) -> Image.Image:
    """A 40 x 48 image (not square, so cropping is exercised) of one colour plus noise."""
    rng = np.random.default_rng(seed)
    base = np.array(COLOURS[colour], dtype=np.int16)
    pixels = base + rng.integers(-20, 21, size=(40, 48, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def write_pairs(folder, n=48, sep=",", image="image", caption="caption"):
    """CleanCLIP's layout: images/ and a CSV of relative paths and captions."""
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        colour = CLASSES[i % len(CLASSES)]
        picture(colour, i).save(folder / "images" / f"{i}.png")
        rows.append((f"images/{i}.png", f"a {colour} thing number {i}"))
    path = folder / "train.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=sep)
        writer.writerow([image, caption])
        writer.writerows(rows)
    return path


def write_folder(folder, per_class=4):
    """An evaluation set of class folders (ids n0..n5), named by a classes JSON file."""
    for k, colour in enumerate(CLASSES):
        (folder / f"n{k}").mkdir(parents=True)
        for j in range(per_class):
            picture(colour, 1000 + 10 * k + j).save(folder / f"n{k}" / f"{j}.png")
    (folder / "classes.json").write_text(json.dumps({f"n{k}": c for k, c in enumerate(CLASSES)}))
    (folder / "templates.txt").write_text("a photo of a {}.\na {} thing\n")
    return folder


def refused_before_training(tmp_path, dataset: str, eval_dataset: str, *args: str) -> str:
    """`benchbd run` on a real dataset that must stop before any training: its one error line
    (exit 2, nothing trained, no result file)."""
    from typer.testing import CliRunner

    from benchbd.cli import app

    cache, results = tmp_path / "cache", tmp_path / "results"
    result = CliRunner().invoke(
        app,
        ["run", "--dataset", dataset, "--eval-dataset", eval_dataset, "--epochs", "1",
         "--defense", "none", "--device", "cpu", "--out", str(results), *args],
        env={"BENCHBD_CACHE": str(cache), "COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("benchbd: error: "), result.output
    assert not list(cache.glob("models/*"))  # nothing trained
    assert not results.exists() or not list(results.iterdir())
    return lines[0]
