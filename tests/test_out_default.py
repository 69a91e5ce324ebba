"""`benchbd run` and `benchbd sweep` write into `runs/` unless told otherwise, so a quick run
never lands among (or is refused by) the committed reference results in `results/`."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from benchbd.cli import app


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_results_go_to_runs_by_default(command):
    shown = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
    line = next(line for line in shown.splitlines() if "--out" in line)
    assert re.search(r"\[default: runs\]", line), line
