"""docs/plugins.md's model-detector package works as written: its files are taken from the page,
installed with pip into a folder of the test's own (`--target`, seen only by the subprocesses
through PYTHONPATH, so the environment running the test is never changed), listed by `benchbd
list model_detectors`, and run by `benchbd zoo --detect` over a tiny zoo, whose scores file
names the detector with its package, version and parameters."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
BLOCK = re.compile(r"^```[a-z]*\n# (?P<path>toy_\w+/\S+)\n(?P<body>.*?)^```", re.S | re.M)
FILES = {"toy_noise/pyproject.toml", "toy_noise/toy_noise/__init__.py"}
ZOO = ["--attacks", "badnet", "--targets", "heart", "--poison-rates", "0.1", "--seeds", "0,1",
       "--clean-seeds", "0-1", "--dataset", "synthetic", "--train-pairs", "256",
       "--clean-pairs", "64", "--test-images", "40", "--validation-images", "40",
       "--epochs", "1", "--batch-size", "64", "--threads", "1", "--device", "cpu"]  # fmt: skip


def example_files() -> dict[str, str]:
    found: dict[str, str] = {}
    for match in BLOCK.finditer(GUIDE.read_text()):
        assert match["path"] not in found, f"{match['path']} is written twice in the guide"
        found[match["path"]] = f"# {match['path']}\n{match['body']}"
    return found


def call(args: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args[:4])} ...\n{done.stdout}\n{done.stderr}"
    return done


def test_the_guide_holds_the_whole_package():
    assert set(example_files()) == FILES


@pytest.mark.slow
def test_the_guides_model_detector_installs_lists_and_scores_a_zoo(tmp_path):
    assert "toy_noise" not in {ep.name for ep in entry_points(group="benchbd.model_detectors")}
    for path, text in example_files().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "BENCHBD_CACHE": str(tmp_path / "cache"), "COLUMNS": "250",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}  # fmt: skip
    call([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
          "--no-index", "--target", str(site), str(tmp_path / "toy_noise")], env,
         timeout=300)  # fmt: skip

    listed = call([sys.executable, "-m", "benchbd", "list", "model_detectors"], env, 300).stdout
    assert "toy_noise" in listed and "toy-noise" in listed and "decree" in listed, listed
    assert "failed to load" not in listed, listed

    out = tmp_path / "zoo"
    call([sys.executable, "-m", "benchbd", "zoo", *ZOO, "--detect", "toy_noise",
          "-p", "images=32", "--out", str(out)], env, timeout=900)  # fmt: skip
    scores = json.loads((out / "detect-toy_noise.json").read_text())
    detector = scores["detector"]
    assert (detector["name"], detector["package"], detector["version"]) == (
        "toy_noise", "toy-noise", "0.1.0")
    assert detector["params"] == {"images": 32}
    assert len(scores["models"]) == 4
    for row in scores["models"]:
        assert 0 < row["score"] <= 1 and row["named_target"] is not None
        assert row["details"]["share"] == row["score"]
    assert scores["metrics"]["seconds_per_model"] > 0
    assert "toy_noise" not in {ep.name for ep in entry_points(group="benchbd.model_detectors")}
