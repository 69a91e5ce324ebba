"""Trade-off curves: list-valued parameters in grids and on `benchbd sweep`, the curves and
Pareto fronts of hand-made results, their two summaries, the table and the plot, and one tiny
real sweep of a finetuning defense at two learning rates."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.core.errors import BenchbdError
from benchbd.core.params import Params, param
from benchbd.core.results import read_result
from benchbd.engine.grid import Grid, load_grid
from benchbd.engine.param_lists import sweep_params
from benchbd.engine.planning import plan
from benchbd.engine.plugins import Defense, defenses
from benchbd.engine.run_config import RunConfig
from benchbd.engine.sweep import names_of, sweep
from benchbd.reporting.curve_plot import curve_figure, write_curve_plot
from benchbd.reporting.curves import Point, best_ca_at_asr, curves, pareto_area, pareto_front

TINY = """
attacks = ["badnet"]
defenses = ["none", "finetune"]
seeds = [0]
[sizes]
train = 512
clean = 128
test = 100
[pretrain]
epochs = 2
batch_size = 64
[run]
poison_rate = 0.05
device = "cpu"
"""


def grid_file(tmp_path, finetune: str = "", name: str = "grid.toml"):
    path = tmp_path / name
    path.write_text(TINY + "[defense_params.finetune]\nepochs = 1\nbatch_size = 64\n" + finetune)
    return path


# --- list-valued parameters --------------------------------------------------------------


def test_a_list_in_a_grid_is_a_cell_per_value_and_lists_multiply(tmp_path):
    grid = load_grid(grid_file(tmp_path, "lr = [1e-4, 1e-3, 1e-4]\nwarmup_steps = [0, 2]\n"))
    cells = grid.cells()
    finetune = [c for c in cells if c.defense == "finetune"]
    swept = [(c.defense_params["lr"], c.defense_params["warmup_steps"]) for c in finetune]
    assert swept == [(1e-4, 0), (1e-4, 2), (1e-3, 0), (1e-3, 2)]  # first list slowest
    assert all(c.defense_params["epochs"] == 1 for c in finetune)
    assert [c.defense for c in cells] == ["none"] + ["finetune"] * 4
    names = names_of(cells)
    assert names[0] == "badnet__none__seed0"
    assert names[1] == "badnet__finetune__seed0__lr=0.0001,warmup_steps=0"
    assert len(set(names)) == len(names)
    # one poisoned model for the whole curve; each value is its own run
    planned = [plan(c) for c in cells]
    assert len({model for model, _ in planned}) == 1
    assert len({run for _, run in planned}) == 5
    # a value from a list is the same experiment as that value written alone
    alone = load_grid(grid_file(tmp_path, "lr = 1e-3\nwarmup_steps = 2\n", "alone.toml"))
    assert plan(alone.cells()[1]) == planned[4]


def test_a_grid_without_lists_makes_the_cells_it_always_made(tmp_path):
    grid = load_grid(grid_file(tmp_path, "lr = 1e-3\n"))
    finetune = {"epochs": 1, "batch_size": 64, "lr": 1e-3}
    expected = [RunConfig(attack="badnet", defense=d, seed=0, defense_params=p,
                          sizes={"train": 512, "clean": 128, "test": 100},
                          pretrain={"epochs": 2, "batch_size": 64}, poison_rate=0.05,
                          device="cpu")
                for d, p in (("none", {}), ("finetune", finetune))]  # fmt: skip
    assert grid.cells() == expected
    assert names_of(grid.cells()) == ["badnet__none__seed0", "badnet__finetune__seed0"]


def test_bad_lists_are_refused_with_their_place(tmp_path):
    with pytest.raises(BenchbdError, match=r"\[defense_params.finetune\].*'lr' must be >= 0"):
        load_grid(grid_file(tmp_path, "lr = [1e-3, -1.0]\n"))
    with pytest.raises(BenchbdError, match="'lr' is an empty list"):
        load_grid(grid_file(tmp_path, "lr = []\n"))


@dataclass(frozen=True)
class ListingParams(Params):
    triggers: str = param("badnet,blended", "names, comma-separated (one value)")
    weight: float = param(1.0, "a strength", min=0.0)
    strict: bool = param(False, "a switch")


class Listing(Defense):
    description = "a defense whose text parameter holds a comma list"
    Params = ListingParams

    def apply(self, clip, context):
        return clip


def test_command_line_lists_split_numbers_and_booleans_never_text():
    defenses.register("listing", Listing, package="tests")
    try:
        attack_params, defense_params = sweep_params(
            ["listing.triggers=badnet,wanet", "listing:weight=0.5, 2", "listing.strict=1,0"],
            ["badnet"], ["none", "listing"],
        )  # fmt: skip
        assert attack_params == {}
        listing = {"triggers": "badnet,wanet", "weight": ["0.5", "2"], "strict": ["1", "0"]}
        assert defense_params == {"listing": listing}
        grid = Grid(["badnet"], ["listing"], [0], defense_params=defense_params)
        cells = grid.cells()
        assert [(c.defense_settings().weight, c.defense_settings().strict) for c in cells] == [
            (0.5, True), (0.5, False), (2.0, True), (2.0, False)]  # fmt: skip
        assert {c.defense_settings().triggers for c in cells} == {"badnet,wanet"}
        with pytest.raises(BenchbdError, match="'listng' is not an attack or defense.*listing"):
            sweep_params(["listng.weight=1"], ["badnet"], ["listing"])
        with pytest.raises(BenchbdError, match="PLUGIN.NAME=VALUE"):
            sweep_params(["weight=1,2"], ["badnet"], ["listing"])
        with pytest.raises(BenchbdError, match="no parameter 'wieght'.*weight"):
            sweep_params(["listing.wieght=1"], ["badnet"], ["listing"])
    finally:
        defenses.unregister("listing")


def test_sweep_dry_run_shows_the_cells_of_a_command_line_list(tmp_path):
    path = grid_file(tmp_path)
    ran = CliRunner().invoke(app, ["sweep", "--dry-run", "--grid", str(path), "--out",
                                   str(tmp_path / "out"), "--timings", str(tmp_path),
                                   "--param", "finetune.lr=1e-4,1e-3"])  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert "sweep plan: 3 cells" in ran.output
    assert "poisoned models: 1, 0 cached, 1 to train" in ran.output
    assert "badnet__finetune__seed0__lr=1e-4 " in ran.output
    assert "badnet__finetune__seed0__lr=1e-3 " in ran.output
    bad = CliRunner().invoke(app, ["sweep", "--dry-run", "--grid", str(path), "--out",
                                   str(tmp_path / "out"), "-p", "finetune.lr=1e-4,x"])  # fmt: skip
    assert bad.exit_code == 2 and bad.output.startswith("benchbd: error: ")
    assert "'lr'" in bad.output and len(bad.output.strip().splitlines()) == 1


# --- curves, fronts and summaries on hand-made results -----------------------------------


def result(defense, seed, lr, after, attack="badnet", rate=0.03, before=(0.92, 0.98)):
    """A result file's fields as the leaderboard reads them; before/after are (CA, ASR)."""
    params = {"epochs": 5.0} if lr is None else {"epochs": 5.0, "lr": lr}
    return {
        "attack": {"name": attack, "params": {}},
        "defense": {"name": defense, "params": params},
        "seed": seed,
        "dataset": {"name": "synthetic"},
        "model": "benchbd-rn-tiny",
        "poison": {"rate": rate},
        "metrics": {
            "before": {"ca": before[0], "asr": before[1]},
            "after": {"ca": after[0], "asr": after[1]},
        },
        "der": 0.5,
        "schema_version": 1,
    }


CURVE = {  # lr -> (CA, ASR) of seeds 0 and 1; 3e-3 is dominated by 1e-3
    1e-5: [(0.90, 0.80), (0.92, 0.70)],
    1e-4: [(0.88, 0.03), (0.86, 0.05)],
    1e-3: [(0.60, 0.00), (0.50, 0.02)],
    3e-3: [(0.40, 0.02), (0.30, 0.04)],
}


@pytest.fixture
def results():
    made = [result("cleanclip", seed, lr, after) for lr, seeds in reversed(CURVE.items())
            for seed, after in enumerate(seeds)]  # fmt: skip
    made.append(result("none", 0, None, (0.92, 0.98)))
    made.append(result("cleanclip", 0, 1e-4, (0.50, 0.50), rate=0.01))  # another experiment
    return made


def test_points_are_seed_means_ordered_by_strength(results):
    found = curves(results)
    assert [(c.attack, c.defense, c.context) for c in found] == [
        ("badnet", "cleanclip", {"poison.rate": "0.01"}),
        ("badnet", "cleanclip", {"poison.rate": "0.03"}),
        ("badnet", "none", {"poison.rate": "0.03"}),
    ]  # fmt: skip
    curve = found[1]
    assert curve.parameters == ("lr",)
    assert [p.strength["lr"] for p in curve.points] == [1e-5, 1e-4, 1e-3, 3e-3]
    assert [p.seeds for p in curve.points] == [2, 2, 2, 2]
    # (CA, ASR) of each point, flat: pytest.approx takes no nested sequences in newer pytest
    assert [v for p in curve.points for v in (p.ca, p.asr)] == pytest.approx(
        [0.91, 0.75, 0.87, 0.04, 0.55, 0.01, 0.35, 0.03])  # fmt: skip
    assert curve.before == pytest.approx((0.98, 0.92))
    assert [p.label() for p in curve.points][:2] == ["lr=1e-05", "lr=0.0001"]
    assert len(found[0].points) == len(found[2].points) == 1


def test_pareto_front_and_summaries(results):
    points = curves(results)[1].points
    front = pareto_front(points)
    assert [p.strength["lr"] for p in front] == [1e-3, 1e-4, 1e-5]  # by ASR, low first
    assert best_ca_at_asr(points) == pytest.approx(0.87)
    assert best_ca_at_asr(points, 0.02) == pytest.approx(0.55)
    assert math.isnan(best_ca_at_asr(points, 0.005))
    area = 0.55 * (0.04 - 0.01) + 0.87 * (0.75 - 0.04) + 0.91 * (1 - 0.75)
    assert pareto_area(points) == pytest.approx(area)
    # the dominated point changes nothing; a perfect point is the whole square
    assert pareto_area(front) == pytest.approx(area)
    assert pareto_area([Point({}, 1.0, 0.0, 1)]) == 1.0
    # equal points are both on the front: neither is strictly better
    twins = [Point({"lr": 1}, 0.5, 0.2, 1), Point({"lr": 2}, 0.5, 0.2, 1),
             Point({"lr": 3}, 0.4, 0.2, 1)]  # fmt: skip
    assert [p.strength["lr"] for p in pareto_front(twins)] == [1, 2]
    with pytest.raises(BenchbdError, match=r"in \[0, 1\]"):
        best_ca_at_asr(points, 1.5)


def write_results(folder, made):
    folder.mkdir(exist_ok=True)
    for i, data in enumerate(made):
        (folder / f"r{i}.json").write_text(json.dumps(data))


def test_table_reports_a_row_per_curve(results, tmp_path):
    write_results(tmp_path / "r", results)
    runner = CliRunner()
    csv = runner.invoke(app, ["table", str(tmp_path / "r"), "--curves", "-f", "csv"])
    assert csv.exit_code == 0, csv.output
    lines = csv.output.splitlines()
    assert lines[0] == ("poison.rate,attack,defense,parameters,strengths,points,front,"
                        "best_ca_at_asr,pareto_area,best")  # fmt: skip
    area = 0.55 * 0.03 + 0.87 * 0.71 + 0.91 * 0.25
    assert lines[2] == (f'0.03,badnet,cleanclip,lr,"lr: 1e-05, 0.0001, 0.001, 0.003",4,3,'
                        f"0.870000,{area:.6f},1")  # fmt: skip
    assert lines[3].startswith("0.03,badnet,none,-,-,1,1,,")  # no point reaches ASR 0.05
    strict = runner.invoke(app, ["table", str(tmp_path / "r"), "--curves", "-f", "markdown",
                                 "--asr-threshold", "0.02"])  # fmt: skip
    assert strict.exit_code == 0, strict.output
    assert "| best CA at ASR<=0.02 | Pareto area |" in strict.output
    assert "| **0.550** |" in strict.output
    wrong = runner.invoke(app, ["table", str(tmp_path / "r"), "--curves", "--sort", "after_ca"])
    assert wrong.exit_code == 2 and "--curves takes none of" in wrong.output


def test_plot_writes_the_curves_when_there_are_some(results, tmp_path):
    figure = curve_figure(results)
    assert [ax.get_title() for ax in figure.axes] == ["badnet\npoison.rate=0.01",
                                                      "badnet\npoison.rate=0.03"]  # fmt: skip
    panel = figure.axes[1]
    assert len(panel.texts) == 4  # a strength label per point of the 4-point curve
    path = write_curve_plot(results, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    write_results(tmp_path / "r", results)
    ran = CliRunner().invoke(app, ["plot", str(tmp_path / "r"), "--out",
                                   str(tmp_path / "board.png")])  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert (tmp_path / "board-curves.png").read_bytes()[:4] == b"\x89PNG"
    # one point per defense is no curve: no curve picture
    write_results(tmp_path / "single", [r for r in results if r["defense"]["params"].get("lr")
                                        in (None, 1e-4) and r["seed"] == 0])  # fmt: skip
    ran = CliRunner().invoke(app, ["plot", str(tmp_path / "single"), "--out",
                                   str(tmp_path / "one.png")])  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert "curves:" not in ran.output and not (tmp_path / "one-curves.png").exists()
    assert not list(tmp_path.glob(".*.tmp"))


# --- a real curve ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_tiny_sweep_over_two_learning_rates_is_a_two_point_curve(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHBD_CACHE", str(tmp_path / "cache"))  # its leader trains, whatever ran
    grid = load_grid(grid_file(tmp_path, "lr = [1e-4, 3e-3]\n"))
    grid = Grid(grid.attacks, ["finetune"], grid.seeds, defense_params=grid.defense_params,
                run=grid.run, sizes=grid.sizes, pretrain=grid.pretrain)  # fmt: skip
    summary = sweep(grid, tmp_path / "out")
    assert (summary.done, summary.failed) == (2, [])
    made = [read_result(p) for p in (tmp_path / "out").glob("*.json")]
    assert Counter(r["pretrain_cached"] for r in made) == {False: 1, True: 1}  # trained once
    (curve,) = curves(made)
    assert (curve.attack, curve.defense, curve.parameters) == ("badnet", "finetune", ("lr",))
    assert [p.strength["lr"] for p in curve.points] == [1e-4, 3e-3]
    assert curve.points[0].ca != curve.points[1].ca  # two strengths, two models


def test_a_curve_of_a_clip_only_model_reads_the_omitted_objective_as_zero():
    """A CLIP-only result leaves pretrain.inmodal_weight out (it is 0); its curve's context
    says 0, as the leaderboard's groups do, not a missing value."""
    clip_only = [{**result("cleanclip", 0, lr, (0.9, 0.1)), "pretrain": {"epochs": 8}}
                 for lr in (1e-4, 1e-3)]  # fmt: skip
    inmodal = [{**result("cleanclip", 0, lr, (0.9, 0.2)),
                "pretrain": {"epochs": 8, "inmodal_weight": 1}} for lr in (1e-4, 1e-3)]  # fmt: skip
    found = curves(clip_only + inmodal)
    assert sorted(c.context["pretrain.inmodal_weight"] for c in found) == ["0", "1"]
