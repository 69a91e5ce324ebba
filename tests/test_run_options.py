"""The front ends agree: `benchbd run`, `benchbd sweep` and a grid file's [run] table take the
same recipe and resource options under the same names, and the same options make the same run.
The CPU threads are part of that run description, put in force where the run starts, recorded
in the result file and in no fingerprint."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
import torch
import typer
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.core.errors import BenchbdError
from benchbd.core.results import read_result
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.grid import Grid, load_grid
from benchbd.engine.planning import plan
from benchbd.engine.run_config import RUN_OPTIONS, RunConfig, apply_resources
from benchbd.engine.train import TrainConfig

runner = CliRunner()
# `run`'s options that are not about the run's recipe or resources: the cell itself (a sweep
# names several: --attacks, --defenses, --seeds) and where its result goes.
CELL = {"attack", "defense", "seed"}
BOTH = {"param", "out", "kernels"}


def option_names(command: str) -> set[str]:
    """The long option names of a `benchbd` command, as a grid file spells them."""
    click_command = typer.main.get_command(app).commands[command]
    return {opt[2:].replace("-", "_") for param in click_command.params
            for opt in param.opts if opt.startswith("--")}  # fmt: skip


def test_run_and_sweep_take_the_same_run_options():
    run, sweep = option_names("run"), option_names("sweep")
    assert run - CELL - BOTH == set(RUN_OPTIONS)
    assert set(RUN_OPTIONS) <= sweep
    assert run - CELL <= sweep


class Captured(Exception):
    """Stops a command where it would start the work, holding what it was given."""


def run_config_of(monkeypatch, args: list[str]) -> RunConfig:
    """The RunConfig `benchbd run ARGS` would run, caught where the pipeline starts."""
    captured = {}

    def start(config, observer=None, out=None):
        captured["config"] = config
        raise BenchbdError("captured")

    monkeypatch.setattr("benchbd.cli.run_cmd.run_pipeline", start)
    result = runner.invoke(app, ["run", *args])
    assert "config" in captured, result.output
    return captured["config"]


def sweep_grid_of(monkeypatch, args: list[str]) -> Grid:
    """The grid `benchbd sweep ARGS` would run, caught where the sweep starts."""
    captured = {}

    def start(grid, out, **kwargs):
        captured["grid"] = grid
        raise BenchbdError("captured")

    monkeypatch.setattr("benchbd.cli.sweep_cmd.sweep", start)
    result = runner.invoke(app, ["sweep", *args])
    assert "grid" in captured, result.output
    return captured["grid"]


def test_the_same_options_make_the_same_run_in_run_sweep_and_a_grid(tmp_path, monkeypatch):
    threads = torch.get_num_threads()  # the count in force: the command changes nothing here
    options = {"target": "circle", "poison_count": 7, "dataset": "csv:pairs.csv",
               "eval_dataset": "imagefolder:eval", "clean_dataset": "csv:clean.csv",
               "pretrained": "weights.pt", "from_pretrained": True, "train_pairs": 300,
               "clean_pairs": 64, "test_images": 40, "validation_images": 20,
               "split": "validation", "eval": "probe", "epochs": 3.0, "batch_size": 32,
               "lr": 0.002, "inmodal_weight": 0.5, "device": "cpu",
               "threads": threads}  # fmt: skip
    args = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    cell = ["--attack", "blended", "--defense", "none", "--seed", "2"]
    run = run_config_of(monkeypatch, [*cell, "--out", str(tmp_path / "run")])
    default = RunConfig(attack="blended", defense="none", seed=2)  # nothing given
    assert run == replace(default, threads=threads)  # the threads it will work with: named
    run = run_config_of(monkeypatch, [*cell, *args, "--out", str(tmp_path / "run")])
    sweep = sweep_grid_of(monkeypatch, ["--attacks", "blended", "--defenses", "none",
                                        "--seeds", "2", *args, "--out", str(tmp_path)])
    assert sweep.cells() == [run]
    grid = tmp_path / "grid.toml"
    grid.write_text('attacks = ["blended"]\ndefenses = ["none"]\nseeds = [2]\n[run]\n'
                    + "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items()))
    assert load_grid(grid).cells() == [run]
    # What each option set, as the run is told it.
    assert run.dataset == "csv:pairs.csv|eval=imagefolder:eval|clean=csv:clean.csv"
    assert run.sizes == DataSizes(train=300, clean=64, test=40, validation=20)
    assert (run.pretrain.epochs, run.pretrain.batch_size, run.pretrain.lr) == (3.0, 32, 0.002)
    assert run.pretrain.inmodal_weight == 0.5 and run.eval == ("probe",)
    assert (run.device, run.threads, run.target, run.poison_count) == ("cpu", threads, "circle", 7)


def test_sweep_options_override_the_grids_tables(tmp_path, monkeypatch):
    grid = tmp_path / "grid.toml"
    grid.write_text('attacks = ["badnet"]\ndefenses = ["none"]\n[run]\nthreads = 3\n'
                    "[pretrain]\nepochs = 5\nlr = 0.01\n[sizes]\ntrain = 512\n")  # fmt: skip
    assert load_grid(grid).cells()[0].threads == 3
    plan_ = sweep_grid_of(monkeypatch, ["--grid", str(grid), "--epochs", "1", "--threads", "1",
                                        "--train-pairs", "256", "--out", str(tmp_path)])
    (config,) = plan_.cells()
    assert config.pretrain == replace(TrainConfig(), epochs=1.0, lr=0.01)
    assert config.sizes.train == 256 and config.threads == 1


def test_run_options_are_checked_like_the_others(tmp_path):
    with pytest.raises(BenchbdError, match="threads must be at least 1, got 0"):
        RunConfig(threads=0)
    with pytest.raises(BenchbdError, match="'threads' of the run must be int"):
        RunConfig(threads="2")
    grid = tmp_path / "grid.toml"
    grid.write_text('attacks = ["badnet"]\ndefenses = ["none"]\n[run]\nepochs = 2\n'
                    "[pretrain]\nepochs = 3\n")  # fmt: skip
    with pytest.raises(BenchbdError, match=r"grid file: epochs and \[pretrain\] epochs both"):
        load_grid(grid)
    grid.write_text('attacks = ["badnet"]\ndefenses = ["none"]\n[run]\nthread = 2\n')
    with pytest.raises(BenchbdError, match="unknown \\[run\\] option 'thread'.*'threads'"):
        load_grid(grid)
    refused = runner.invoke(app, ["sweep", "--threads", "0", "--out", str(tmp_path / "o")])
    assert refused.exit_code == 2 and "threads must be at least 1" in refused.output
    assert not (tmp_path / "o").exists()


def test_threads_are_put_in_force_where_a_run_starts_and_fingerprint_nothing():
    before = torch.get_num_threads()
    config = RunConfig(sizes=DataSizes(train=200, clean=64, test=60, validation=30))
    assert config.threads is None
    assert apply_resources(config).threads == before  # unset: the process's count, recorded
    other = 2 if before != 2 else 1
    try:
        assert apply_resources(replace(config, threads=other)).threads == other
        assert torch.get_num_threads() == other
    finally:
        torch.set_num_threads(before)
    assert plan(replace(config, threads=other), weights=False) == plan(config, weights=False)


@pytest.mark.slow
def test_sweep_threads_and_recipe_options_reach_the_result_files(tmp_path):
    # per cell: a thread count other than the default share of the cores between two jobs
    threads = 1 if (os.cpu_count() or 1) // 2 > 1 else 2
    out = tmp_path / "out"
    result = runner.invoke(app, [
        "sweep", "--attacks", "badnet", "--defenses", "none", "--seeds", "0,1", "--jobs", "2",
        "--threads", str(threads), "--epochs", "1", "--lr", "0.002", "--batch-size", "64",
        "--train-pairs", "256", "--clean-pairs", "64", "--test-images", "50",
        "--poison-rate", "0.05", "--device", "cpu", "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    results = [read_result(path) for path in out.glob("*.json")]
    assert sorted(r["seed"] for r in results) == [0, 1]
    for r in results:
        assert (r["pretrain"]["epochs"], r["pretrain"]["lr"], r["pretrain"]["batch_size"]) == (
            1.0, 0.002, 64)  # fmt: skip
        assert r["dataset"]["sizes"]["train"] == 256
        assert (r["runtime"]["threads"], r["runtime"]["pretrain_threads"]) == (threads, threads)
