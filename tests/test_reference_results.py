"""The committed reference results: their table is exactly what `benchbd table` makes of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.leaderboard import load_folder

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
    folders = sorted({path.parent for path in RESULTS.rglob("*.json")})
    results = [result for folder in folders for result in load_folder(folder)[0]]
    assert len(results) > 400
    made_otherwise = [
        f"{r['attack']['name']}/{r['defense']['name']}/{r['seed']}"
        for r in results
        if (r["runtime"]["threads"], r["runtime"]["pretrain_threads"]) != (1, 1)
    ]
    assert not made_otherwise


def test_the_digits_grid_is_complete_for_every_defense_of_every_stage():
    results, warnings = load_folder(RESULTS / "digits")
    assert not warnings and {r["dataset"]["name"] for r in results} == {"digits"}
    cells = {(r["attack"]["name"], r["defense"]["name"], r["seed"]) for r in results}
    attacks = {"badnet", "blended", "wanet", "label_consistent"}
    defenses = {"none", "finetune", "cleanclip", "inmodal", "cleanclip_supervised",  # finetune
                "kdistance", "lof", "dao", "iforest", "cosine_gmm",  # screen
                "roclip", "safeclip"}  # pretrain  # fmt: skip
    # wanet's and label-consistent's kdistance cells on seeds 1 and 2 were removed when it
    # changed (results/digits/grid.toml)
    rerun = {(a, "kdistance", s) for a in ("wanet", "label_consistent") for s in (1, 2)}
    full = {(a, d, s) for a in attacks for d in defenses for s in (0, 1, 2)}
    assert full - rerun <= cells <= full
    assert len(results) == len(cells)


def test_the_frontier_grid_is_complete():
    results, warnings = load_folder(RESULTS / "frontier")
    assert not warnings
    cells = {(r["attack"]["name"], r["defense"]["name"], r["seed"]) for r in results}
    attacks = {"badclip", "sig", "nashville", "multi_trigger"}
    defenses = {"none", "finetune", "cleanclip", "inmodal", "cleanclip_supervised"}
    assert cells == {(a, d, s) for a in attacks for d in defenses for s in (0, 1, 2)}
    assert len(results) == len(cells)


def safeclip_validation_choice() -> float:
    """SafeCLIP's `start` that the committed validation runs choose by the rule their grid
    states: the higher mean validation CA among the variants with ASR <= 0.10 on both
    attacks; if none, the lower mean ASR."""
    results, warnings = load_folder(RESULTS / "validation" / "safeclip")
    assert not warnings and {r["dataset"]["split"] for r in results} == {"validation"}
    by_start: dict[float, list[dict]] = {}
    for r in results:
        start = r["defense"]["params"].get("start", 0.0)
        by_start.setdefault(start, []).append(r["metrics"]["after"])
    assert sorted(by_start) == [0.0, 0.5] and all(len(v) == 2 for v in by_start.values())
    passing = {start: sum(m["ca"] for m in ms) for start, ms in by_start.items()
               if all(m["asr"] <= 0.10 for m in ms)}  # fmt: skip
    mean_asr = {start: sum(m["asr"] for m in ms) for start, ms in by_start.items()}
    return max(passing, key=passing.get) if passing else min(mean_asr, key=mean_asr.get)


def test_the_stages_grid_holds_its_tier():
    """results/stages on the embedded data: every attack against every screen but kdistance
    and both pretraining-time defenses on seed 0, and badnet and blended against each on
    seeds 0-2;
    SafeCLIP at the start its validation runs chose (its default kept on seed 0 as the
    record of why)."""
    results, warnings = load_folder(RESULTS / "stages")
    assert not warnings
    chosen = safeclip_validation_choice()
    cells = set()
    for r in results:
        start = r["defense"]["params"].get("start", 0.0)
        cells.add((r["attack"]["name"], r["defense"]["name"], r["seed"], start))
    # kdistance's cells were removed when it changed (results/stages/grid.toml)
    defenses = [(d, 0.0) for d in ("lof", "dao", "iforest", "cosine_gmm", "roclip")]
    defenses.append(("safeclip", chosen))
    one_seed = {(a, d, 0, start) for a in ("wanet", "label_consistent") for d, start in defenses}
    headline = {(a, d, s, start) for a in ("badnet", "blended") for s in (0, 1, 2)
                for d, start in defenses}  # fmt: skip
    assert one_seed | headline <= cells
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
    assert cells == {(a, d, s) for a in attacks for d in defenses for s in (0, 1, 2)}
    assert len(results) == len(cells)  # one file per cell


@pytest.mark.parametrize("name", ["leaderboard.png"])
def test_reference_plot_is_committed(name):
    assert (RESULTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_committed_results_are_what_the_engine_would_run_now():
    """Each committed result (the embedded, digits, objective, frontier and stages grids,
    BadCLIP's and SafeCLIP's validation variants) rebuilds into the
    experiment it records, with the same
    fingerprints (so a sweep over them skips every cell, and a rerun writes the same file),
    and every one ran with the portable kernels."""
    from benchbd.experiment import RunConfig
    from benchbd.pipeline import plan

    folders = [RESULTS, *(RESULTS / name for name in ("digits", "objective", "frontier",
                                                      "stages")),
               RESULTS / "validation" / "badclip", RESULTS / "validation" / "safeclip"]  # fmt: skip
    results = [r for folder in folders for r in load_folder(folder)[0]]
    for result in results:
        rebuilt = plan(RunConfig.from_result(result))
        assert rebuilt == (result["poisoned_model_fingerprint"], result["fingerprint"]), result
        assert result["runtime"]["kernels"]["level"] == "portable-avx2"
        assert result["runtime"]["pretrain_kernels"] == "portable-avx2"
