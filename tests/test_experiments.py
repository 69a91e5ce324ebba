"""One definition of "the same experiment" (reporting.experiments): the tables group result
files by the same settings as the curves, plots and claims do."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from benchbd.reporting.experiments import (
    experiment_key,
    newest_per_seed,
    setting_codes,
    settings,
)
from benchbd.reporting.leaderboard import load_folder, tabulate

RESULTS = Path(__file__).resolve().parent.parent / "results"
FOLDERS = sorted({path.parent for path in RESULTS.rglob("*.json")
                  if not (path.parent / "manifest.json").exists()})  # a zoo: no run results


def by_experiment(results: list[dict]) -> list[list[int]]:
    """The plain view: the results kept (one per seed), grouped by experiment_key."""
    keys = [experiment_key(settings(r)) for r in results]
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i in newest_per_seed(results, keys):
        groups[keys[i]].append(i)
    return sorted(groups.values())


@pytest.mark.parametrize("folder", FOLDERS, ids=[str(f.relative_to(RESULTS)) for f in FOLDERS])
def test_the_table_and_the_plain_settings_agree_on_the_committed_results(folder):
    """Every row of a committed folder's table averages exactly the files the plain view
    (curves, plots, claims) calls one experiment, and the frame's codes are equal exactly
    where the plain keys are."""
    results, _ = load_folder(folder)
    rows = tabulate(results).rows
    assert sorted(sorted(row.members) for row in rows) == by_experiment(results)
    keys = [experiment_key(settings(r)) for r in results]
    codes = [tuple(line) for line in setting_codes(results).to_numpy().tolist()]
    assert len(set(zip(keys, codes, strict=True))) == len(set(keys)) == len(set(codes))


def result(seed: int, **fields) -> dict:
    base = {"attack": {"name": "badnet", "params": {"patch": 3}},
            "defense": {"name": "none", "params": {}}, "seed": seed, "model": "m",
            "pretrain": {"lr": 0.001}, "metrics": {"after": {"asr": 0.5 + seed}},
            "created": f"2026-01-0{seed + 1}T00:00:00+00:00"}  # fmt: skip
    return {**base, **fields}


def test_both_views_read_settings_alike():
    """Numbers compare as numbers, a list is one value, a setting left out at its default is
    that value, an unrecorded field differs from a recorded one; outcomes, seeds and dates are
    not settings."""
    same = [result(0), result(1, attack={"name": "badnet", "params": {"patch": 3.0}}),
            result(2, pretrain={"lr": 0.001, "inmodal_weight": 0.0})]  # fmt: skip
    other = [result(0, attack={"name": "badnet", "params": {"patch": [3]}}),
             result(1, pretrain={"lr": 0.001, "inmodal_weight": 0.5}),
             result(2, extra={"note": "new setting"})]  # fmt: skip
    results = same + other
    assert by_experiment(results) == [[0, 1, 2], [3], [4], [5]]
    assert sorted(sorted(row.members) for row in tabulate(results).rows) == by_experiment(results)
    codes = setting_codes(results).to_numpy()
    assert (codes[0] == codes[1]).all() and (codes[0] == codes[2]).all()
    assert not any((codes[0] == codes[i]).all() for i in (3, 4, 5))
