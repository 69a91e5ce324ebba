"""The committed reference results: their table is exactly what `benchbd table` makes of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.reporting.leaderboard import load_folder

RESULTS = Path(__file__).resolve().parent.parent / "results"


def test_committed_leaderboard_is_the_table_of_the_committed_files():
    committed = (RESULTS / "LEADERBOARD.md").read_text()
    made = CliRunner().invoke(app, ["table", str(RESULTS), "--format", "markdown"])
    assert made.exit_code == 0, made.output
    assert made.stdout == committed


@pytest.mark.parametrize(
    ("folder", "page"),
    [(RESULTS, "reference-results.md"), (RESULTS / "digits", "reference-results.md"),
     (RESULTS / "frontier", "frontier.md"), (RESULTS / "stages", "reference-results.md")],
    ids=["synthetic", "digits", "frontier", "stages"],
)  # fmt: skip
def test_the_docs_quote_the_committed_leaderboards(folder, page):
    """The docs show the tables themselves; they must be the generated ones, and each is what
    `benchbd table` makes of its folder."""
    docs = (RESULTS.parent / "docs" / page).read_text()
    committed = (folder / "LEADERBOARD.md").read_text()
    assert committed.strip() in docs
    made = CliRunner().invoke(app, ["table", str(folder), "--format", "markdown"])
    assert made.exit_code == 0 and made.stdout == committed, made.output


def test_every_committed_result_ran_with_one_thread_a_cell():
    """A cell's numbers depend on its thread count, and the committed grids are regenerated
    with `--jobs 2` on 2 cores (one thread a cell): a file made with other threads would not
    come back identical (`benchmarks/reference_grid.py --compare`)."""
    folders = sorted({path.parent for path in RESULTS.rglob("*.json")
                      if not (path.parent / "manifest.json").exists()})  # a zoo: no run results
    results = [result for folder in folders for result in load_folder(folder)[0]]
    assert len(results) > 400
    made_otherwise = [
        f"{r['attack']['name']}/{r['defense']['name']}/{r['seed']}"
        for r in results
        if (r["runtime"]["threads"], r["runtime"]["pretrain_threads"]) != (1, 1)
    ]
    assert not made_otherwise


def test_the_digits_grid_is_complete_for_every_defense_of_every_stage():
    """Every cell but SafeCLIP's against wanet and label-consistent, and against badnet and
    blended on the seeds its validation did not reach: deleted when SafeCLIP became its
    authors' method (the grid file says so)."""
    results, warnings = load_folder(RESULTS / "digits")
    assert not warnings and {r["dataset"]["name"] for r in results} == {"digits"}
    cells = {(r["attack"]["name"], r["defense"]["name"], r["seed"]) for r in results}
    attacks = {"badnet", "blended", "wanet", "label_consistent"}
    defenses = {"none", "finetune", "cleanclip", "inmodal", "cleanclip_supervised",  # finetune
                "kdistance", "lof", "dao", "iforest", "cosine_gmm",  # screen
                "roclip", "safeclip"}  # pretrain  # fmt: skip
    _, seeds = safeclip_recipe_choice()
    deleted = {(a, "safeclip", s) for a in attacks for s in (0, 1, 2)
               if a in ("wanet", "label_consistent") or s not in seeds}  # fmt: skip
    # RoCLIP on the headline attacks only (its grid's header says why)
    deleted |= {(a, "roclip", s) for a in ("wanet", "label_consistent") for s in (0, 1, 2)}
    grid = {(a, d, s) for a in attacks for d in defenses for s in (0, 1, 2)} - deleted
    # wanet's and label-consistent's kdistance cells on seeds 1 and 2 were removed when it
    # changed (results/digits/grid.toml)
    rerun = {(a, "kdistance", s) for a in ("wanet", "label_consistent") for s in (1, 2)}
    headline = grid_cells(RESULTS / "digits" / "headline.toml")
    assert (grid - rerun) | headline <= cells <= grid | headline
    assert len(results) == len(cells)


def grid_cells(path: Path) -> set[tuple[str, str, int]]:
    """The (attack, defense, seed) cells a grid file names."""
    grid = tomllib.loads(path.read_text())
    return {(a, d, s) for a in grid["attacks"] for d in grid["defenses"] for s in grid["seeds"]}


def test_the_frontier_grid_is_complete():
    """Its grid, and the headline claim's further SIG seeds (headline.toml)."""
    results, warnings = load_folder(RESULTS / "frontier")
    assert not warnings
    cells = {(r["attack"]["name"], r["defense"]["name"], r["seed"]) for r in results}
    attacks = {"badclip", "sig", "nashville", "multi_trigger"}
    defenses = {"none", "finetune", "cleanclip", "inmodal", "cleanclip_supervised"}
    grid = {(a, d, s) for a in attacks for d in defenses for s in (0, 1, 2)}
    assert grid == grid_cells(RESULTS / "frontier" / "grid.toml")
    assert cells == grid | grid_cells(RESULTS / "frontier" / "headline.toml")
    assert len(results) == len(cells)


SAFECLIP_CANDIDATES = (0.01, 0.1)  # growth, in order of change from the paper's recipe
SAFECLIP_RECIPE = {"inmodal_epochs": 5, "clip_epochs": 1, "safe_probability": 0.9, "cap": 0.85}


def safeclip_recipe_choice() -> tuple[float, tuple[int, ...]]:
    """The growth that results/validation/safeclip_recipe/grid.toml's rule picks from its
    files: the first candidate (in order of change from the paper's recipe) whose mean
    validation CA drop against the undefended model is at most 0.05 on each attack over the
    seeds run; a later candidate runs only when the one before fails; if none passes, the one
    whose largest per-attack drop is smallest (on a tie, the earlier)."""
    results, warnings = load_folder(RESULTS / "validation" / "safeclip_recipe")
    assert not warnings and {r["dataset"]["split"] for r in results} == {"validation"}
    assert {r["dataset"]["name"] for r in results} == {"digits"}
    undefended = {(r["attack"]["name"], r["seed"]): r["metrics"]["after"]["ca"]
                  for r in results if r["defense"]["name"] == "none"}  # fmt: skip
    drops: dict[float, dict[str, dict[int, float]]] = {}
    for r in results:
        if r["defense"]["name"] != "safeclip":
            continue
        params = r["defense"]["params"]
        assert {k: params[k] for k in SAFECLIP_RECIPE} == SAFECLIP_RECIPE and params["cross_aug"]
        drop = undefended[(r["attack"]["name"], r["seed"])] - r["metrics"]["after"]["ca"]
        by_attack = drops.setdefault(params["growth"], {}).setdefault(r["attack"]["name"], {})
        by_attack[r["seed"]] = drop
    # the seeds run in order, both attacks each, and every candidate on the same seeds
    seeds = {tuple(sorted(v)) for by_attack in drops.values() for v in by_attack.values()}
    assert len(seeds) == 1
    seeds_run = next(iter(seeds))
    assert seeds_run == tuple(range(len(seeds_run)))
    worst = {}
    for growth in SAFECLIP_CANDIDATES:
        if growth not in drops:
            break
        by_attack = drops[growth]
        assert sorted(by_attack) == ["badnet", "blended"]
        worst[growth] = max(sum(v.values()) / len(v) for v in by_attack.values())
        if worst[growth] <= 0.05:
            assert set(drops) == set(worst)  # no candidate after the winner ran
            return growth, seeds_run
    assert set(drops) == set(SAFECLIP_CANDIDATES)  # none passed: every one ran
    return min(worst, key=worst.get), seeds_run


def test_the_digits_safeclip_cells_run_the_recipe_chosen_on_validation():
    """The test-split verdict runs the winner on the seeds its validation ran (the same
    models: a stage's model does not depend on the split)."""
    growth, seeds = safeclip_recipe_choice()
    results, _ = load_folder(RESULTS / "digits")
    safeclip = [r for r in results if r["defense"]["name"] == "safeclip"]
    assert {(r["attack"]["name"], r["seed"]) for r in safeclip} == {
        (a, s) for a in ("badnet", "blended") for s in seeds}  # fmt: skip
    for r in safeclip:
        assert r["dataset"]["split"] == "test"
        params = r["defense"]["params"]
        assert {k: params[k] for k in SAFECLIP_RECIPE} == SAFECLIP_RECIPE
        assert params["growth"] == growth and params["cross_aug"] and "start" not in params


# results/validation/roclip/grid.toml's candidates, in its tie order.
ROCLIP_CANDIDATES = {"A": (5e-4, 100), "B": (1e-3, 100), "C": (None, None)}


def roclip_validation_choice() -> str:
    """RoCLIP's recipe that the committed validation runs choose by the rule their grid
    states: among the candidates whose CA drop is <= 0.05 on both attacks, the lowest mean
    ASR (ties within 0.005 in the order A, B, C); if none, the highest mean CA."""
    results, warnings = load_folder(RESULTS / "validation" / "roclip")
    assert not warnings and {r["dataset"]["split"] for r in results} == {"validation"}
    by_candidate: dict[str, dict[str, dict]] = {}
    for r in results:
        params = r["defense"]["params"]
        if params["every"] != 2 or not params["augment"]:
            continue  # the plain-CLIP control, not a candidate
        recipe = (params["lr"], params["warmup_steps"])
        name = next(k for k, v in ROCLIP_CANDIDATES.items() if v == recipe)
        by_candidate.setdefault(name, {})[r["attack"]["name"]] = r["metrics"]
    assert sorted(by_candidate) == sorted(ROCLIP_CANDIDATES)
    assert all(set(m) == {"badnet", "blended"} for m in by_candidate.values())
    mean = {name: {key: sum(m["after"][key] for m in ms.values()) / 2 for key in ("asr", "ca")}
            for name, ms in by_candidate.items()}  # fmt: skip
    drops = {name: [m["before"]["ca"] - m["after"]["ca"] for m in ms.values()]
             for name, ms in by_candidate.items()}  # fmt: skip
    keeps_ca = [name for name, drop in drops.items() if max(drop) <= 0.05]
    if not keeps_ca:
        return max(ROCLIP_CANDIDATES, key=lambda name: mean[name]["ca"])
    best = min(mean[name]["asr"] for name in keeps_ca)
    return next(name for name in ROCLIP_CANDIDATES
                if name in keeps_ca and mean[name]["asr"] <= best + 0.005)  # fmt: skip


def test_the_test_split_roclip_runs_use_the_recipe_its_validation_rule_chose():
    lr, warmup = ROCLIP_CANDIDATES[roclip_validation_choice()]
    results, _ = load_folder(RESULTS / "digits")
    ran = [r for r in results if r["defense"]["name"] == "roclip"]
    assert ran and {r["dataset"]["split"] for r in ran} == {"test"}
    for r in ran:
        params = r["defense"]["params"]
        assert (params["lr"], params["warmup_steps"]) == (lr, warmup)
        assert (params["every"], params["pool"], params["augment"]) == (2, 1024, True)


def test_the_stages_grid_holds_its_tier():
    """results/stages on the embedded data: every attack against every screen but kdistance on
    seed 0, and badnet and blended against each on seeds 0-2. SafeCLIP's, RoCLIP's and
    kdistance's cells were deleted when each became its authors' method (the grid file says so)."""
    results, warnings = load_folder(RESULTS / "stages")
    assert not warnings
    cells = {(r["attack"]["name"], r["defense"]["name"], r["seed"]) for r in results}
    defenses = ("lof", "dao", "iforest", "cosine_gmm")
    one_seed = {(a, d, 0) for a in ("wanet", "label_consistent") for d in defenses}
    headline = {(a, d, s) for a in ("badnet", "blended") for s in (0, 1, 2) for d in defenses}
    assert one_seed | headline <= cells
    assert not {"safeclip", "roclip"} & {d for _, d, _ in cells}
    assert len(results) == len(cells)


def test_the_objective_axis_has_every_curve_point():
    """results/objective: blended's CleanCLIP curve (5 learning rates) under both objectives,
    and the two variants (3 learning rates): badnet under both, blended at in-modal weight 2."""
    results, warnings = load_folder(RESULTS / "objective")
    assert not warnings
    cells = set()
    for r in results:
        lr = r["defense"]["params"].get("lr") if r["defense"]["name"] == "cleanclip" else None
        weight = r["pretrain"].get("inmodal_weight", 0.0)
        cells.add((r["attack"]["name"], weight, r["defense"]["name"], lr, r["seed"]))
    five, three = (1e-4, 3e-4, 5e-4, 1e-3, 3e-3), (3e-4, 5e-4, 3e-3)
    curves = [("blended", 0.0, five), ("blended", 1.0, five), ("badnet", 0.0, three),
              ("badnet", 1.0, three), ("blended", 2.0, three)]  # fmt: skip
    expected = {(a, w, d, lr, s) for a, w, lrs in curves for s in (0, 1, 2)
                for d, lr in [("none", None), *(("cleanclip", lr) for lr in lrs)]}  # fmt: skip
    assert cells == expected
    assert len(results) == len(cells)


def test_reference_grid_is_complete():
    results, warnings = load_folder(RESULTS)
    assert not warnings
    cells = {(r["attack"]["name"], r["defense"]["name"], r["seed"]) for r in results}
    attacks = {"badnet", "blended", "wanet", "label_consistent"}
    defenses = {"none", "finetune", "cleanclip", "inmodal", "cleanclip_supervised"}
    grid = {(a, d, s) for a in attacks for d in defenses for s in (0, 1, 2)}
    # results/headline.toml: the headline claims' seeds 3-4 of every attack
    headline = {(a, d, s) for a in attacks for d in ("none", "cleanclip") for s in (3, 4)}
    assert cells == grid | headline
    assert len(results) == len(cells)  # one file per cell


@pytest.mark.parametrize("name", ["leaderboard.png"])
def test_reference_plot_is_committed(name):
    assert (RESULTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_committed_results_are_what_the_engine_would_run_now():
    """Each committed result (the embedded, digits, objective, frontier and stages grids,
    BadCLIP's validation variants and SafeCLIP's recipe) rebuilds into the
    experiment it records, with the same
    fingerprints (so a sweep over them skips every cell, and a rerun writes the same file),
    and every one ran with the portable kernels."""
    from benchbd.engine.planning import plan
    from benchbd.engine.run_config import RunConfig

    folders = [RESULTS, *(RESULTS / name for name in ("digits", "objective", "frontier",
                                                      "stages")),
               RESULTS / "validation" / "badclip",
               RESULTS / "validation" / "safeclip_recipe"]  # fmt: skip
    results = [r for folder in folders for r in load_folder(folder)[0]]
    for result in results:
        rebuilt = plan(RunConfig.from_result(result))
        assert rebuilt == (result["poisoned_model_fingerprint"], result["fingerprint"]), result
        assert result["runtime"]["kernels"]["level"] == "portable-avx2"
        assert result["runtime"]["pretrain_kernels"] == "portable-avx2"
