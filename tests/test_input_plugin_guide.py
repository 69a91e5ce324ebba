"""docs/plugins.md's example input detector, `acme_confidence`, works as written: its files
are taken from the page, pip-installed into a folder only the subprocesses see, listed by
`benchbd list`, and run in a tiny experiment whose result file records the detection numbers
and the metrics with flagged inputs rejected (as tests/test_plugin_guide.py does for the other
three example packages)."""

from __future__ import annotations

import json
import os
import sys
from importlib.metadata import PackageNotFoundError, distribution

import pytest
from test_plugin_guide import call, canonical, example_files

PACKAGE, DISTRIBUTION = "acme_confidence", "acme-confidence"
RUN = ["--attack", "badnet", "--defense", PACKAGE, "--poison-rate", "0.1",
       "--train-pairs", "256", "--clean-pairs", "128", "--test-images", "60",
       "--validation-images", "60", "--epochs", "1", "--batch-size", "64",
       "--threads", "1", "--device", "cpu", "--param", "temperature=2"]  # fmt: skip


def installed_here() -> bool:
    try:
        distribution(DISTRIBUTION)
        return True
    except PackageNotFoundError:
        return False


@pytest.mark.slow
def test_the_guides_input_detector_installs_lists_and_runs(tmp_path):
    assert not installed_here()
    files = {path: text for path, text in example_files().items()
             if path.startswith(f"{PACKAGE}/")}  # fmt: skip
    assert set(files) == {f"{PACKAGE}/pyproject.toml", f"{PACKAGE}/{PACKAGE}/__init__.py"}
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "BENCHBD_CACHE": str(tmp_path / "cache"), "COLUMNS": "250",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}  # fmt: skip
    call([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
          "--no-index", "--target", str(site), str(tmp_path / PACKAGE)], env,
         timeout=300)  # fmt: skip
    listed = call([sys.executable, "-m", "benchbd", "list"], env, timeout=300).stdout
    assert PACKAGE in listed, listed
    detail = call([sys.executable, "-m", "benchbd", "list", PACKAGE], env, timeout=300).stdout
    assert "temperature" in detail, detail

    out = tmp_path / "out"
    call([sys.executable, "-m", "benchbd", "run", *RUN, "--out", str(out)], env, timeout=600)
    (path,) = out.glob(f"badnet__{PACKAGE}__seed0__*.json")
    result = json.loads(path.read_text())
    record = result["defense"]
    assert (record["name"], canonical(record["package"])) == (PACKAGE, DISTRIBUTION)
    assert record["params"] == {"temperature": 2.0} and record["version"] == "0.1.0"
    detection = result["metrics"]["detection"]
    triggered = result["metrics"]["before"]["n_triggered"]
    assert detection["scored"] == 60 + triggered and 0 <= detection["auroc"] <= 1
    assert detection["validation_fpr"] <= 0.05 and detection["seconds_per_image"] > 0
    before, after = result["metrics"]["before"], result["metrics"]["after"]
    assert after["ca"] <= before["ca"] and after["asr"] <= before["asr"]
    assert result["extra"]["stage"]["stage"] == "input"
    assert result["extra"]["input_detection"]["threshold"] == detection["threshold"]
    assert not installed_here(), "the test changed the environment it runs in"
