"""The one ranking rule (reporting.ranking), like-with-like before columns, intervals in every
table, --per-seed and --ca-tolerance; and every committed table, checked against it."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.core.errors import BenchbdError
from benchbd.reporting.intervals import interval
from benchbd.reporting.leaderboard import load_folder, tabulate
from benchbd.reporting.leaderboard_tables import render
from benchbd.reporting.ranking import DEFAULT_CA_TOLERANCE, check_tolerance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
runner = CliRunner()


def result(attack, defense, seed, before, after, params=None, **extra):
    """A result dict; before/after are (CA, ASR); `extra` goes under "extra"."""
    return {
        "attack": {"name": attack, "params": {}},
        "defense": {"name": defense, "params": params or {}},
        "seed": seed,
        "dataset": {"name": "synthetic"},
        "model": "benchbd-rn-tiny",
        "pretrain": {"inmodal_weight": 0.0},
        "metrics": {
            "before": {"ca": before[0], "asr": before[1], "classifier": "zero-shot"},
            "after": {"ca": after[0], "asr": after[1], "classifier": "zero-shot"},
        },
        "der": (max(0, before[1] - after[1]) - max(0, before[0] - after[0]) + 1) / 2,
        "extra": extra,
        "schema_version": 1,
    }


def by_name(rows):
    return {(r.defense, r.groups): r for r in rows}


# --- the rule on small synthetic results -------------------------------------------------


def test_a_row_beyond_the_ca_tolerance_is_listed_after_the_eligible_ones_never_best():
    results = [
        result("badnet", "ruin", 0, (0.9, 0.95), (0.70, 0.00)),  # lowest ASR, CA -0.20
        result("badnet", "ruin", 1, (0.9, 0.95), (0.74, 0.02)),
        result("badnet", "mild", 0, (0.9, 0.95), (0.88, 0.30)),  # CA -0.02
        result("badnet", "mild", 1, (0.9, 0.95), (0.89, 0.20)),
        result("badnet", "none", 0, (0.9, 0.95), (0.90, 0.95)),
    ]
    rows = tabulate(results).rows
    assert [r.defense for r in rows] == ["mild", "none", "ruin"]
    mild, none, ruin = rows
    assert mild.best and mild.rank == 1 and mild.rank_text == "1"
    assert none.rank == 0 and none.rank_text == "baseline" and not none.best
    assert not ruin.eligible and not ruin.best and ruin.rank == 0
    assert ruin.ca_drop == pytest.approx(0.18)
    assert ruin.rank_text == "unranked: CA drop 0.180 > 0.05"
    # a looser tolerance lets it rank, and first: the rule, not the data, decided
    loose = tabulate(results, ca_tolerance=0.2).rows
    assert [r.defense for r in loose] == ["ruin", "mild", "none"] and loose[0].best
    markdown = render(rows, "markdown")
    assert "| **badnet** | **mild** |" in markdown and "| **badnet** | **ruin** |" not in markdown


def test_the_mean_decides_and_a_seed_beyond_the_tolerance_is_named():
    results = [
        result("badnet", "cleanclip", 0, (0.9, 0.95), (0.83, 0.05)),  # this seed drops 0.07
        result("badnet", "cleanclip", 1, (0.9, 0.95), (0.91, 0.05)),  # mean drop 0.03
        result("badnet", "finetune", 0, (0.9, 0.95), (0.90, 0.60)),
    ]
    first = tabulate(results).rows[0]
    assert (first.defense, first.best, first.eligible) == ("cleanclip", True, True)
    assert first.rank_text == "1; seed 0 CA drop 0.070"


def test_a_row_that_averages_in_an_untrained_seed_never_ranks():
    untrained = {"screen": {"kept": 3, "trained": False}}
    results = [
        result("wanet", "cosine_gmm", 0, (0.9, 0.95), (0.90, 0.00)),
        result("wanet", "cosine_gmm", 1, (0.9, 0.95), (0.10, 0.00), **untrained),
        result("wanet", "cosine_gmm", 2, (0.9, 0.95), (0.90, 0.00)),
        result("wanet", "lof", 0, (0.9, 0.95), (0.90, 0.40)),
    ]
    # even at a tolerance that the mean drop (0.27) meets, the untrained seed rules it out
    for tolerance in (0.05, 1.0):
        rows = tabulate(results, ca_tolerance=tolerance).rows
        assert [r.defense for r in rows] == ["lof", "cosine_gmm"]
        assert rows[0].best and rows[1].rank_text == "unranked: untrained on 1 of 3 seeds"


def test_variants_of_a_defense_compete_and_other_settings_separate_rankings():
    results = []
    for weight in (0.0, 1.0):  # the poisoned model's pretraining objective: separate rankings
        for lr, asr, ca in ((1e-4, 0.40, 0.90), (5e-4, 0.10, 0.89), (3e-3, 0.01, 0.70)):
            for seed in (0, 1):
                r = result("blended", "cleanclip", seed, (0.9, 0.9), (ca, asr), {"lr": lr})
                r["pretrain"]["inmodal_weight"] = weight
                results.append(r)
        none = result("blended", "none", 0, (0.9, 0.9), (0.9, 0.9))
        none["pretrain"]["inmodal_weight"] = weight
        results.append(none)
    board = tabulate(results)
    assert board.group_by == ["pretrain.inmodal_weight", "defense.params.lr"]
    assert board.scope == ("pretrain.inmodal_weight",)
    best = [(r.groups, r.rank_text) for r in board.rows if r.best]
    assert best == [(("0", "0.0005"), "1"), (("1", "0.0005"), "1")]  # one winner per objective
    ranks = {r.groups: r.rank_text for r in board.rows}
    assert ranks[("0", "0.0001")] == "2" and ranks[("1", "0.003")].startswith("unranked: CA")


def test_bad_tolerances_are_one_line_errors(tmp_path):
    for bad in (math.nan, math.inf, -0.01, 1.5, "x", True):
        with pytest.raises(BenchbdError, match="--ca-tolerance"):
            check_tolerance(bad)
    assert check_tolerance(0) == 0.0 and check_tolerance(1) == 1.0
    (tmp_path / "r.json").write_text(json.dumps(result("badnet", "x", 0, (0.9, 0.9), (0.9, 0.1))))
    for command in (
        ["table", str(tmp_path)],
        ["plot", str(tmp_path), "--out", str(tmp_path / "p.png")],
        ["report", str(tmp_path), "--out", str(tmp_path / "site"), "--no-triggers"],
    ):
        for bad in ("nan", "-1", "2", "inf", "abc"):
            made = runner.invoke(app, [*command, "--ca-tolerance", bad])
            lines = [line for line in made.output.splitlines() if line.strip()]
            assert made.exit_code == 2 and len(lines) == 1, (command, bad, made.output)
            assert lines[0].startswith("benchbd: error: --ca-tolerance must be a finite number")
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "site").exists()


# --- like with like ----------------------------------------------------------------------


def linear_head(seed, zero_shot_asr, probe_asr, after_asr):
    r = result("badnet", "cleanclip_supervised", seed, (0.99, zero_shot_asr), (0.999, after_asr),
               der_basis="linear-probe")  # fmt: skip
    r["metrics"]["after"]["classifier"] = "linear-head"
    r["metrics"]["before_probe"] = {"ca": 0.998, "asr": probe_asr, "classifier": "linear-head"}
    r["der"] = (max(0, probe_asr - after_asr) - max(0, 0.998 - 0.999) + 1) / 2
    return r


def test_a_linear_head_defense_is_compared_with_the_probe_of_the_poisoned_encoder():
    results = [linear_head(0, 0.99, 0.25, 0.02), linear_head(1, 0.97, 0.55, 0.03),
               result("badnet", "cleanclip", 0, (0.99, 0.99), (0.99, 0.04))]  # fmt: skip
    columns = ["before_ca", "before_asr", "before_zeroshot_asr", "after_asr", "der"]
    board = tabulate(results, columns=columns)
    head = next(r for r in board.rows if r.defense == "cleanclip_supervised")
    assert head.basis == "linear-probe"
    assert head.spreads["before_asr"].mean == pytest.approx(0.40)  # the probe's, not 0.98
    assert head.spreads["before_ca"].mean == pytest.approx(0.998)
    assert head.spreads["before_zeroshot_asr"].mean == pytest.approx(0.98)
    assert head.ca_drop == pytest.approx(0.998 - 0.999)  # the drop on the probe's basis
    # DER as stored is on the same basis as the before columns the table shows
    ders = [(max(0, b - a) - max(0, 0.998 - 0.999) + 1) / 2 for b, a in ((0.25, 0.02),
                                                                      (0.55, 0.03))]  # fmt: skip
    assert head.spreads["der"].mean == pytest.approx(sum(ders) / 2)
    zero_shot = next(r for r in board.rows if r.defense == "cleanclip")
    assert zero_shot.spreads["before_zeroshot_asr"].mean == zero_shot.spreads["before_asr"].mean
    text = render(board.rows, "markdown", columns=columns).splitlines()[0]
    assert "| ASR before | ASR before (zero-shot) |" in text


def test_every_committed_linear_head_result_stores_der_on_the_probe_basis():
    for path in sorted(RESULTS.rglob("*cleanclip_supervised*.json")):
        r = json.loads(path.read_text())
        assert r["extra"]["der_basis"] == "linear-probe", path
        before, after = r["metrics"]["before_probe"], r["metrics"]["after"]
        der = (max(0, before["asr"] - after["asr"]) - max(0, before["ca"] - after["ca"]) + 1) / 2
        assert r["der"] == pytest.approx(der, abs=1e-9), path


# --- intervals and the per-seed view -----------------------------------------------------


def test_every_mean_carries_its_t_interval_and_n():
    asrs = [0.10, 0.30, 0.20]
    results = [result("badnet", "cleanclip", s, (0.9, 0.95), (0.9, a)) for s, a in enumerate(asrs)]
    results.append(result("badnet", "cleanclip", 3, (0.9, 0.95), (0.9, math.nan)))
    spread = tabulate(results).rows[0].spreads["after_asr"]
    expected = interval(asrs)
    assert (spread.mean, spread.n) == (pytest.approx(expected.mean), 3)
    assert (spread.low, spread.high) == (pytest.approx(expected.low), pytest.approx(expected.high))
    line = render(tabulate(results).rows, "markdown").splitlines()[2]
    assert (
        f"| {expected.mean:.3f} [{expected.low:.3f}, {expected.high:.3f}] (n=3) (1 nan) |" in line
    )
    import pandas as pd

    csv = pd.read_csv(io.StringIO(render(tabulate(results).rows, "csv")))
    assert csv.loc[0, "after_asr_n"] == 3
    assert csv.loc[0, "after_asr_low"] == pytest.approx(expected.low, abs=1e-6)


def test_the_table_says_what_its_numbers_and_ranks_mean(tmp_path):
    for i, r in enumerate([result("badnet", "a", 0, (0.9, 0.9), (0.9, 0.1)),
                           result("badnet", "a", 1, (0.9, 0.9), (0.9, 0.2))]):  # fmt: skip
        (tmp_path / f"{i}.json").write_text(json.dumps(r))
    made = runner.invoke(app, ["table", str(tmp_path), "--format", "markdown",
                               "--ca-tolerance", "0.02"])  # fmt: skip
    assert made.exit_code == 0, made.output
    note = made.stdout.split("\n\n")[1]
    assert "95 % interval" in note and "Student t" in note and "at most 0.02" in note
    latex = runner.invoke(app, ["table", str(tmp_path), "--format", "latex"]).stdout
    assert "% Each number is the mean over seeds" in latex


def test_per_seed_lists_every_file_with_its_own_numbers(tmp_path):
    rows = [result("badnet", "cleanclip", 0, (0.9, 0.95), (0.84, 0.10)),
            result("badnet", "cleanclip", 1, (0.9, 0.95), (0.90, 0.20)),
            result("badnet", "cosine_gmm", 0, (0.9, 0.95), (0.1, 0.0),
                   screen={"kept": 0, "trained": False})]  # fmt: skip
    for i, r in enumerate(rows):
        (tmp_path / f"file{i}.json").write_text(json.dumps(r))
    made = runner.invoke(app, ["table", str(tmp_path), "--per-seed", "--format", "markdown"])
    assert made.exit_code == 0, made.output
    lines = made.stdout.splitlines()
    assert lines[0] == ("| attack | defense | seed | file | rank | CA drop | trained | CA before "
                        "| ASR before | CA after | ASR after | DER |")  # fmt: skip
    assert lines[2].startswith("| badnet | cleanclip | 0 | file0.json | 1; seed 0 CA drop 0.060 "
                               "| 0.060 | yes | 0.900 | 0.950 | 0.840 | 0.100 |")  # fmt: skip
    assert lines[3].startswith("| badnet | cleanclip | 1 | file1.json |")
    assert lines[4].startswith("| badnet | cosine_gmm | 0 | file2.json | unranked: untrained | "
                               "0.800 | no |")  # fmt: skip
    csv = runner.invoke(app, ["table", str(tmp_path), "--per-seed", "-f", "csv"]).stdout
    assert csv.splitlines()[0].startswith("attack,defense,seed,file,ranking,ca_drop,trained,")
    assert runner.invoke(app, ["table", str(tmp_path), "--per-seed"]).exit_code == 0  # rich


# --- every committed table ---------------------------------------------------------------


def _regeneration():
    spec = importlib.util.spec_from_file_location(
        "regenerate_tables", ROOT / "benchmarks" / "regenerate_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def committed_tables() -> list[tuple[Path, list[str], dict]]:
    """(table file, `benchbd table` arguments, tabulate options) of every committed table that
    ranks rows: each grid's LEADERBOARD.md, the detection tables, the ablation."""
    regenerate = _regeneration()
    tables = []
    for path in sorted(RESULTS.rglob("LEADERBOARD.md")):
        tables.append((path, [], {}))
    for name, columns in regenerate.DETECTION_COLUMNS.items():
        options = {"columns": columns.split(","), "sort": "detection_auroc"}
        tables.append(
            (
                RESULTS / name / "DETECTION.md",
                ["--columns", columns, "--sort", "detection_auroc"],
                options,
            )
        )
    ablation = RESULTS / regenerate.ABLATION
    tables.append((ablation / "ABLATION.md", ["--group-by", regenerate.WEIGHT],
                   {"group_by": [regenerate.WEIGHT]}))  # fmt: skip
    return tables


def test_the_committed_tables_are_every_grids():
    grids = {p.parent for p in RESULTS.rglob("*.json")
             if not (p.parent / "manifest.json").exists()}  # a zoo folder holds no run results
    tabled = {path.parent for path, _, _ in committed_tables()}
    assert grids == tabled


@pytest.mark.parametrize(
    "path,args,options",
    committed_tables(),
    ids=lambda v: str(v.relative_to(RESULTS)) if isinstance(v, Path) else "",
)
def test_no_committed_table_ranks_an_unusable_model_first(path, args, options):
    """Each committed table is what `benchbd table` makes now, and every bold or first-ranked
    row, checked from its result files on its own: mean CA drop (probe basis for a linear head)
    within 0.05 and no untrained seed."""
    made = runner.invoke(app, ["table", str(path.parent), "--format", "markdown", *args])
    assert made.exit_code == 0, made.output
    assert made.stdout == path.read_text(), "stale: python benchmarks/regenerate_tables.py"
    results = load_folder(path.parent)[0]
    board = tabulate(results, **options)
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")][1:]
    assert len(lines) == len(board.rows)
    for line, row in zip(lines, board.rows, strict=True):
        assert line.startswith("| **") == row.best
        if not (row.best or row.rank == 1):
            continue
        assert re.search(r"\| \*\*1(; [^|*]*)?\*\* \|", line)  # rank 1, with any per-seed note
        drops = []
        for i in row.members:
            metrics, extra = results[i]["metrics"], results[i].get("extra") or {}
            before = metrics["before_probe" if extra.get("der_basis") == "linear-probe"
                             else "before"]  # fmt: skip
            drops.append(before["ca"] - metrics["after"]["ca"])
            assert (extra.get("screen") or {}).get("trained", True), (path, row)
        assert sum(drops) / len(drops) <= DEFAULT_CA_TOLERANCE, (path, row)


# --- the site of every grid --------------------------------------------------------------


def test_report_all_writes_a_page_per_grid_and_an_index(tmp_path):
    root = tmp_path / "results"
    for sub, defenses in (("", ("a", "b")), ("digits", ("a",)), ("deep/er", ("c",))):
        folder = root / sub
        folder.mkdir(parents=True, exist_ok=True)
        for defense in defenses:
            r = result("badnet", defense, 0, (0.9, 0.9), (0.5 if defense == "b" else 0.9, 0.1))
            (folder / f"{defense}.json").write_text(json.dumps(r))
    (root / "empty").mkdir()
    made = runner.invoke(app, ["report", str(root), "--out", str(tmp_path / "site"), "--all",
                               "--no-triggers"])  # fmt: skip
    assert made.exit_code == 0, made.output
    site = tmp_path / "site"
    assert sorted(p.name for p in site.iterdir()) == ["deep-er", "digits", "index.html",
                                                      "results"]  # fmt: skip
    index = (site / "index.html").read_text()
    for slug in ("results", "digits", "deep-er"):
        assert f'href="{slug}/index.html"' in index
        page = (site / slug / "index.html").read_text()
        assert 'href="../index.html"' in page and (site / slug / "leaderboard.png").exists()
    main = (site / "results" / "index.html").read_text()
    assert "unranked: CA drop 0.400 &gt; 0.05" in main and 'class="unranked"' in main


def test_the_committed_site_has_a_current_page_per_grid():
    """docs/site: a page for every folder of result files, each ranking its rows as the
    table of that folder does (python benchmarks/regenerate_tables.py makes both)."""
    import html
    import re

    from benchbd.reporting.report import grid_slug, result_folders

    site = ROOT / "docs" / "site"
    index = (site / "index.html").read_text()
    for folder in result_folders(RESULTS):
        slug = grid_slug(RESULTS, folder)
        assert f'href="{slug}/index.html"' in index, slug
        page = (site / slug / "index.html").read_text()
        rows = tabulate(load_folder(folder)[0]).rows
        assert len(re.findall(r"<tr[^>]*data-row=", page)) == len(rows), slug
        for i, row in enumerate(rows):
            line = re.search(rf'<tr[^>]*data-row="{i}".*?</tr>', page).group(0)
            assert f">{row.defense}</a>" in line and f">{html.escape(row.rank_text)}<" in line
