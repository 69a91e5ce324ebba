"""The sweep on a tiny grid: every cell once, resume after an interruption, failures recorded,
parallel workers, submitit's local executor, TOML grids and bad input."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.core.errors import BenchbdError
from benchbd.core.results import read_result
from benchbd.engine.grid import Grid, expand_names, load_grid
from benchbd.engine.plugins import Defense, defenses
from benchbd.engine.sweep import SweepObserver, sweep

TINY_GRID = dict(
    sizes={"train": 512, "clean": 128, "test": 100},
    pretrain={"epochs": 2, "batch_size": 64},
    run={"poison_rate": 0.05, "device": "cpu"},
    defense_params={"finetune": {"epochs": 1, "batch_size": 64, "warmup_steps": 1}},
)


def tiny_grid(defenses=("none", "finetune"), seeds=(0,), attacks=("badnet",)) -> Grid:
    return Grid(list(attacks), list(defenses), list(seeds), **TINY_GRID)


def result_cells(folder) -> Counter:
    return Counter(
        (r["attack"]["name"], r["defense"]["name"], r["seed"])
        for r in map(read_result, folder.glob("*.json"))
    )


class Recorder(SweepObserver):
    def __init__(self, stop_after: int | None = None) -> None:
        self.events: list[tuple[str, str]] = []
        self.stop_after = stop_after

    def start(self, total: int, skipped: int) -> None:
        self.events.append(("start", f"{total}/{skipped}"))

    def cell_started(self, name: str) -> None:
        self.events.append(("started", name))

    def cell_finished(self, outcome) -> None:
        self.events.append((outcome.status, outcome.name))
        done = sum(1 for kind, _ in self.events if kind == "done")
        if self.stop_after is not None and done >= self.stop_after:
            raise KeyboardInterrupt  # the user pressed Ctrl-C here


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_duplicates_or_lost_cells(tmp_path, monkeypatch):
    # a cache of its own: whatever ran before, each leader here trains its model
    monkeypatch.setenv("BENCHBD_CACHE", str(tmp_path / "cache"))
    grid = tiny_grid(seeds=(0, 1))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        sweep(grid, out, observer=Recorder(stop_after=1))
    assert sum(result_cells(out).values()) == 1
    recorder = Recorder()
    summary = sweep(grid, out, observer=recorder)
    assert (summary.skipped, summary.done, summary.failed) == (1, 3, [])
    cells = result_cells(out)
    assert set(cells) == {("badnet", d, s) for d in ("none", "finetune") for s in (0, 1)}
    assert set(cells.values()) == {1}
    # The leader of each (attack, seed) trained the poisoned model; the others reused it.
    results = [read_result(p) for p in out.glob("*.json")]
    trained = Counter(r["seed"] for r in results if not r["pretrain_cached"])
    assert trained == {0: 1, 1: 1}
    # A finished grid reruns without running anything.
    again = sweep(grid, out, observer=Recorder())
    assert (again.skipped, again.done) == (4, 0)


@pytest.mark.slow
def test_a_finished_leaders_followers_run_before_the_next_leader(tmp_path, monkeypatch):
    """Depth first: once an (attack, seed)'s poisoned model is trained, the cells that reuse it
    run next, so a sweep stopped at any point leaves whole groups, not a row of poisoned
    models without their defenses."""
    monkeypatch.setenv("BENCHBD_CACHE", str(tmp_path / "cache"))  # nothing cached yet
    recorder = Recorder()
    sweep(tiny_grid(seeds=(0, 1)), tmp_path / "out", observer=recorder)
    started = [name for kind, name in recorder.events if kind == "started"]
    assert started == ["badnet__none__seed0", "badnet__finetune__seed0",
                       "badnet__none__seed1", "badnet__finetune__seed1"]  # fmt: skip


class Explodes(Defense):
    description = "a defense that fails at run time"

    def apply(self, clip, context):
        raise RuntimeError("out of luck")


@pytest.mark.slow
def test_a_failing_cell_is_recorded_and_the_others_run(tmp_path):
    defenses.register("explodes", Explodes, package="tests")
    try:
        summary = sweep(tiny_grid(defenses=("explodes", "none")), tmp_path)
    finally:
        defenses.unregister("explodes")
    assert summary.done == 1 and [o.name for o in summary.failed] == ["badnet__explodes__seed0"]
    record = json.loads((tmp_path / "failed" / "badnet__explodes__seed0.json").read_text())
    assert record["error"] == "RuntimeError: out of luck"
    assert set(result_cells(tmp_path)) == {("badnet", "none", 0)}


@pytest.mark.slow
def test_parallel_workers_and_submitit_local_give_the_same_numbers(tmp_path):
    grid = tiny_grid(defenses=("none", "finetune"))
    inline, pool, local = tmp_path / "inline", tmp_path / "pool", tmp_path / "submitit"
    sweep(grid, inline)
    summary = sweep(grid, pool, jobs=2, poll_s=0.1)
    assert summary.done == 2 and not summary.failed
    pytest.importorskip("submitit")
    sweep(tiny_grid(defenses=("none",)), local, executor="submitit-local", poll_s=0.2)

    def metrics(folder):
        return {
            r["defense"]["name"]: [(m["ca"], m["asr"]) for m in r["metrics"].values()]
            for r in map(read_result, folder.glob("*.json"))
        }

    assert metrics(pool) == metrics(inline)
    assert metrics(local)["none"] == metrics(inline)["none"]


def test_grid_file_and_bad_input(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(
        'attacks = "all"\ndefenses = ["none"]\nseeds = [3, 4]\n'
        "[run]\npoison_rate = 0.01\n[attack_params.blended]\nalpha = 0.3\n"
    )
    grid = load_grid(path)
    assert "none" not in grid.attacks and {"badnet", "blended"} <= set(grid.attacks)
    assert grid.seeds == [3, 4] and grid.attack_params == {"blended": {"alpha": 0.3}}
    cells = grid.cells()
    assert len(cells) == len(grid.attacks) * 2
    assert next(c for c in cells if c.attack == "blended").attack_params == {"alpha": 0.3}
    path.write_text('attacks = "all"\nseed = [1]\n')
    with pytest.raises(BenchbdError, match="unknown key 'seed'.*seeds"):
        load_grid(path)
    path.write_text("attacks = [")
    with pytest.raises(BenchbdError, match="not valid TOML"):
        load_grid(path)
    with pytest.raises(Exception, match="unknown attack 'badnt'"):
        expand_names("badnet,badnt", "attack")
    # A bad parameter anywhere in the grid stops the sweep before anything trains.
    bad = Grid(["badnet"], ["finetune"], [0], **{**TINY_GRID, "defense_params": {
        "finetune": {"epochs": -1}}})  # fmt: skip
    with pytest.raises(Exception, match="epochs"):
        sweep(bad, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.json"))


@pytest.mark.slow
def test_cli_sweep_reports_failures_in_its_exit_code(tmp_path):
    runner = CliRunner()
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'attacks = ["badnet"]\ndefenses = ["explodes", "none"]\nseeds = [0]\n'
        '[run]\npoison_rate = 0.05\ndevice = "cpu"\n'
        "[sizes]\ntrain = 512\nclean = 128\ntest = 100\n[pretrain]\nepochs = 2\nbatch_size = 64\n"
    )
    defenses.register("explodes", Explodes, package="tests")
    try:
        result = runner.invoke(app, ["sweep", "--grid", str(grid), "--out", str(tmp_path / "r")])
    finally:
        defenses.unregister("explodes")
    assert result.exit_code == 1, result.output
    assert "1 done, 0 skipped, 1 failed of 2 cells" in result.output
    unknown = runner.invoke(app, ["sweep", "--attacks", "nope", "--out", str(tmp_path)])
    assert unknown.exit_code == 2 and "unknown attack 'nope'" in unknown.output
