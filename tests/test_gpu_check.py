"""benchmarks/gpu_check.py in its tiny CPU mode: every attack and defense runs a cell, both
trainers report a rate, and the JSON file holds what the GPU run will report."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchbd.engine.plugins import attacks, defenses

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_tiny_cpu_mode_runs_every_plugin_and_both_trainers(tmp_path):
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--threads", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["tiny"] is True and report["threads"] == 1

    ran = {(c["attack"], c["defense"]) for c in report["cells"]}
    expected = {(a, "none") for a in attacks.names()}
    expected |= {("badnet", d) for d in defenses.names()}
    assert ran == expected
    for cell in report["cells"]:
        assert cell["status"] == "ok", cell
        assert 0.0 <= cell["ca"] <= 1.0 and cell["seconds"] > 0

    assert [t["model"] for t in report["throughput"]] == ["benchbd-rn-tiny", "benchbd-vit-tiny"]
    open_clip_train_runs = all(
        importlib.util.find_spec(name) for name in ("open_clip_train", "braceexpand", "webdataset")
    )
    for row in report["throughput"]:
        ours, theirs = row["benchbd"], row["open_clip_train"]
        assert row["image_size"] == 32 and row["pairs"] == 256
        assert ours["pairs_per_s"] > 0
        assert ours["autocast"] is None and ours["channels_last"] is True  # fp32 on the CPU
        assert theirs["precision"] == "fp32"
        if open_clip_train_runs:  # `pip install -e ".[bench]"` brings its loaders
            assert theirs["pairs_per_s"] > 0
            assert row["ratio"] == pytest.approx(ours["pairs_per_s"] / theirs["pairs_per_s"],
                                                 abs=0.01)  # fmt: skip
        else:  # said in the file, not a failed check
            assert "open_clip_train failed" in theirs["error"] and row["ratio"] is None
