"""Progress where researchers run long jobs: plain lines in a log, not a bar nobody sees."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.cli.progress import PlainSweepObserver
from benchbd.engine.sweep import CellOutcome

TINY = ["--train-pairs", "256", "--clean-pairs", "128", "--test-images", "64",
        "--epochs", "2", "--batch-size", "64"]  # fmt: skip


@pytest.mark.slow
def test_a_run_logged_to_a_file_prints_stages_and_steps(tmp_path):
    result = CliRunner().invoke(
        app, ["run", *TINY, "--defense", "none", "--out", str(tmp_path)],
        env={"BENCHBD_LOG_INTERVAL": "0", "COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    steps = [line for line in lines if line.startswith("benchbd: pretrain step ")]
    assert len(steps) == 8  # every step with interval 0: 256 pairs / 64 a batch x 2 epochs
    assert steps[-1].startswith("benchbd: pretrain step 8/8 loss ") and "pairs/s" in steps[-1]
    assert "left 0:00:00" in steps[-1]
    assert not any(" steps loss " in line for line in lines)  # no progress bar in a log


@pytest.mark.slow
def test_a_long_interval_keeps_the_first_and_last_step_only(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHBD_CACHE", str(tmp_path / "cache"))  # pretrain, not reuse
    result = CliRunner().invoke(
        app, ["run", *TINY, "--defense", "none", "--out", str(tmp_path)],
        env={"BENCHBD_LOG_INTERVAL": "3600"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    steps = [line for line in result.output.splitlines() if " pretrain step " in line]
    assert [s.split()[3] for s in steps] == ["1/8", "8/8"]


def test_a_bad_interval_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["run", *TINY, "--out", str(tmp_path)],
                                env={"BENCHBD_LOG_INTERVAL": "soon"})  # fmt: skip
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "benchbd: error: BENCHBD_LOG_INTERVAL must be a number of seconds >= 0, got 'soon'"
    ]


def test_a_sweep_in_a_log_says_what_runs_and_how_far_it_is():
    buffer = io.StringIO()
    observer = PlainSweepObserver(Console(file=buffer, width=200), interval=0)
    observer.start(total=4, skipped=1)
    observer.cell_started("badnet__none__seed0")
    observer.tick()
    observer.cell_finished(CellOutcome("badnet__none__seed0", "done", 12.0,
                                       metrics={"ca": 0.9, "asr": 0.95}))  # fmt: skip
    observer.cell_started("badnet__finetune__seed0")
    observer.tick()
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "benchbd: sweep: 4 cells, 1 already have results, 3 to run"
    assert "benchbd: started badnet__none__seed0" in lines
    assert lines[2].startswith("benchbd: sweep: 0/3 cells done, 1 running, 0 failed")
    assert lines[2].endswith("left unknown")
    assert "benchbd: done    badnet__none__seed0: CA 0.900  ASR 0.950  (12 s)" in lines
    assert lines[-1].startswith("benchbd: sweep: 1/3 cells done, 1 running, 0 failed")
