"""`benchbd sweep --dry-run`: the cells, the cached poisoned models and the time the recorded
timings predict, planned with the sweep's own fingerprints and without writing anything."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.engine.dry_run import Timings
from benchbd.engine.grid import load_grid
from benchbd.engine.run_config import RunConfig
from benchbd.engine.sweep import sweep

RESULTS = Path(__file__).parent.parent / "results"
# Two committed reference results: badnet/none seed 0 reused a cached poisoned model (its time
# is the cell's alone); badnet/cleanclip seed 1 trained its model first (its attack_s and
# pretrain_s are the model's time, the rest the cell's). Both recorded one thread.
NONE_SEED0 = RESULTS / "badnet__none__seed0__59a6f7f2.json"
CLEANCLIP_SEED1 = RESULTS / "badnet__cleanclip__seed1__c4729064.json"
NONE_CELL_S = 7.821
CLEANCLIP_CELL_S = 1252.29 - (0.477 + 1038.06)
MODEL_S = 0.477 + 1038.06


def result(attack, defense, total, threads, pretrain=None, pretrain_threads=1) -> dict:
    timings = {"total_s": total, "attack_s": 0.0, "pretrain_s": pretrain or 0.0}
    return {"attack": {"name": attack}, "defense": {"name": defense}, "model": "m",
            "pretrain_cached": pretrain is None, "timings": timings,
            "runtime": {"threads": threads, "pretrain_threads": pretrain_threads}}  # fmt: skip


def test_recorded_times_are_averaged_and_scaled_to_the_sweeps_threads():
    timings = Timings([
        result("badnet", "none", 100.0, threads=1),
        result("badnet", "none", 300.0, threads=2, pretrain=200.0, pretrain_threads=2),
        result("wanet", "none", 50.0, threads=None),  # an old file without a thread count
    ])  # fmt: skip
    config = RunConfig(attack="badnet", defense="none", model="m")
    cell = timings.cell(config, threads=2)
    # 100 s on one thread is 50 s on two; 300 s less its 200 s of pretraining is 100 s.
    assert cell.seconds == pytest.approx(75.0) and cell.runs == 2 and cell.scaled_from == (1,)
    model = timings.model(config, threads=1)
    assert model.seconds == pytest.approx(400.0) and model.scaled_from == (2,)
    wanet = timings.cell(RunConfig(attack="wanet", defense="none", model="m"), threads=4)
    assert wanet.seconds == 50.0 and wanet.scaled_from == ()
    assert timings.cell(RunConfig(attack="wanet", defense="finetune", model="m"), 1) is None
    # wanet trained no model of its own: badnet's is borrowed, and says so.
    borrowed = timings.model(RunConfig(attack="wanet", defense="none", model="m"), 1)
    assert borrowed.seconds == pytest.approx(400.0) and borrowed.borrowed


def dry_run(out: Path, *options: str):
    jobs = str(os.cpu_count() or 1)  # one thread a cell, the recorded count, on any machine
    return CliRunner().invoke(app, ["sweep", "--dry-run", "--out", str(out), "--jobs", jobs,
                                    "--attacks", "badnet", "--seeds", "0,1", *options])  # fmt: skip


def line(output: str, start: str) -> str:
    found = [row for row in output.splitlines() if row.strip().startswith(start)]
    assert len(found) == 1, output
    return found[0]


@pytest.mark.slow  # plans six cells at the default sizes: the data is generated
def test_dry_run_plans_the_grid_from_committed_results(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for path in (NONE_SEED0, CLEANCLIP_SEED1):
        shutil.copy(path, out)
    before = sorted(p.name for p in out.iterdir())
    ran = dry_run(out, "--defenses", "none,cleanclip,finetune", "--timings", str(out))
    assert ran.exit_code == 0, ran.output
    text = ran.output
    assert "6 cells, 2 already have results" in text and "4 to run" in text
    assert line(text, "done       badnet__none__seed0").split() == ["done", "badnet__none__seed0"]
    assert "~0.1 min (1 recorded)" in line(text, "to run     badnet__none__seed1")
    assert f"~{CLEANCLIP_CELL_S / 60:.1f} min (1 recorded)" in line(
        text, "to run     badnet__cleanclip__seed0"
    )
    assert line(text, "done       badnet__cleanclip__seed1")
    for seed in (0, 1):
        assert "no timing recorded" in line(text, f"to run     badnet__finetune__seed{seed}")
        # The test cache is empty: both poisoned models are still to train.
        assert f"~{MODEL_S / 60:.1f} min" in line(text, f"to train   badnet seed {seed}")
    total = NONE_CELL_S + CLEANCLIP_CELL_S + 2 * MODEL_S
    assert (f"estimated time: {total / 60:.1f} min of cell time (2 with no timing recorded "
            "not counted)") in text  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written


TINY_GRID = """attacks = ["badnet"]
defenses = ["none", "finetune"]
seeds = [0, 1]
[sizes]
train = 512
clean = 128
test = 100
validation = 0
[pretrain]
epochs = 1
batch_size = 64
[run]
device = "cpu"
"""


def tiny_dry_run(tmp_path: Path, out: Path, *options: str):
    grid = tmp_path / "grid.toml"
    grid.write_text(TINY_GRID)
    return CliRunner().invoke(app, ["sweep", "--dry-run", "--grid", str(grid), "--out", str(out),
                                    "--timings", str(tmp_path), *options])  # fmt: skip


def test_seeds_on_the_command_line_override_the_grids(tmp_path):
    """`--seeds 0` with a grid runs that grid's seed 0 alone (a tier of a committed grid);
    without `--seeds` the grid's own seeds stand."""
    one = tiny_dry_run(tmp_path, tmp_path / "out", "--seeds", "1")
    assert one.exit_code == 0, one.output
    assert "4 cells" not in one.output and "2 cells" in one.output
    assert "badnet__none__seed1" in one.output and "seed0" not in one.output
    both = tiny_dry_run(tmp_path, tmp_path / "out")
    assert "4 cells" in both.output and "seed0" in both.output and "seed1" in both.output
    bad = tiny_dry_run(tmp_path, tmp_path / "out", "--seeds", "x")
    assert bad.exit_code != 0 and "seeds must be integers" in bad.output


def test_dry_run_writes_no_folder_and_says_when_nothing_is_recorded(tmp_path):
    out = tmp_path / "missing"
    ran = tiny_dry_run(tmp_path, out)
    assert ran.exit_code == 0, ran.output
    assert not out.exists()
    assert "no timing recorded" in line(ran.output, "to run     badnet__none__seed0")
    assert "estimated time: 0.0 min of cell time (6 with no timing recorded" in ran.output
    bad = tiny_dry_run(tmp_path, out, "--jobs", "0")
    assert bad.exit_code == 2 and "--jobs must be at least 1" in bad.output


@pytest.mark.slow
def test_dry_run_after_a_sweep_reports_the_model_it_cached(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(TINY_GRID)
    sweep(replace(load_grid(grid), defenses=["none"], seeds=[0]), tmp_path)
    ran = tiny_dry_run(tmp_path, tmp_path)
    assert ran.exit_code == 0, ran.output
    text = ran.output
    assert "poisoned models: 2, 1 cached, 1 to train" in text
    assert line(text, "cached     badnet seed 0")
    assert "(1 recorded" in line(text, "to train   badnet seed 1")
    assert line(text, "done       badnet__none__seed0")
    assert "(1 recorded" in line(text, "to run     badnet__none__seed1")
    assert "no timing recorded" in line(text, "to run     badnet__finetune__seed0")


def test_an_attack_with_no_recorded_time_is_estimated_from_the_other_attacks():
    """A new attack's cells cost what the same defense costs against other attacks, and its
    poisoned model what other attacks' models cost with the same pretraining objective; the
    estimate says it was borrowed, and nothing at all is still 'no timing recorded'."""
    timings = Timings([
        result("badnet", "cleanclip", 100.0, threads=1),
        result("wanet", "cleanclip", 300.0, threads=1, pretrain=180.0),
        result("wanet", "none", 230.0, threads=1, pretrain=200.0),
    ])  # fmt: skip
    new = RunConfig(attack="sig", defense="cleanclip", model="m")
    cell = timings.cell(new, threads=1)
    assert cell.seconds == pytest.approx(110.0) and cell.runs == 2
    assert cell.borrowed and "other attacks" in cell.describe()
    own = timings.cell(RunConfig(attack="badnet", defense="cleanclip", model="m"), threads=1)
    assert own.seconds == pytest.approx(100.0) and not own.borrowed
    model = timings.model(new, threads=1)
    assert model.seconds == pytest.approx(190.0) and model.borrowed
    # Another pretraining objective costs another time: nothing recorded for it, no guess.
    inmodal = replace(new, pretrain={"inmodal_weight": 1.0})
    assert timings.model(inmodal, threads=1) is None
    assert timings.cell(RunConfig(attack="sig", defense="roclip", model="m"), threads=1) is None
    assert timings.cell(RunConfig(attack="sig", defense="none", model="other"), threads=1) is None


def test_a_recorded_inmodal_pretraining_time_estimates_only_inmodal_models():
    with_weight = result("badnet", "none", 10.0, threads=1, pretrain=500.0)
    with_weight["pretrain"] = {"inmodal_weight": 1.0}
    timings = Timings([with_weight, result("badnet", "none", 10.0, threads=1, pretrain=300.0)])
    clip_only = RunConfig(attack="badnet", defense="none", model="m")
    assert timings.model(clip_only, threads=1).seconds == pytest.approx(300.0)
    inmodal = replace(clip_only, pretrain={"inmodal_weight": 1.0})
    assert timings.model(inmodal, threads=1).seconds == pytest.approx(500.0)
