"""The leaderboard's rows with the result files behind each, for the site's configurations.

`leaderboard()` gives rows (attack, defense, the values of the settings that split rows of one
attack, the seeds' spreads) but neither the files a row averages nor the names of the settings
that split rows. The site needs both, and recovers them from those public objects alone:

- an experiment is every result sharing all recorded settings but the seed
  (`benchbd.experiments`), and a row is one experiment;
- a split setting's name is the recorded field whose value, written by `leaderboard()` itself
  as a group column, is the row's value for every row (checked both ways);
- a row's files are then the experiment with the same attack, defense and those values.

Without a split (the usual folder) the names are empty and a row is found by attack and defense.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchbd.experiments import experiment_key, newest_per_seed, settings, split_columns, varying
from benchbd.leaderboard import Row, leaderboard
from benchbd.result_frame import group_text


@dataclass(frozen=True)
class Cell:
    """One row of the table and the result files it averages (one per seed, by seed)."""

    row: Row
    results: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Table:
    """The site's table: its cells in the leaderboard's order, and the names of the settings
    that split rows (None where no recorded field explains a column)."""

    cells: list[Cell]
    group_names: list[str | None]


def table(results: Sequence[Mapping[str, Any]]) -> Table:
    rows = leaderboard(list(results))
    experiments = _experiments(results)
    width = len(rows[0].groups) if rows else 0
    names = _group_names(rows, experiments, results, width)
    found: list[tuple[Mapping[str, Any], ...]] = [() for _ in rows]
    for group in experiments:
        texts = [_field_text(group[0], name) if name else None for name in names]
        for i, row in enumerate(rows):
            if not found[i] and _fits(row, group[0], texts):
                found[i] = tuple(group)
                break
    return Table([Cell(row, files) for row, files in zip(rows, found, strict=True)], names)


def _experiments(results: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Results grouped by experiment, one file per seed (the newest, as the table counts it),
    ordered by seed."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for result in results:
        groups.setdefault(experiment_key(settings(result)), []).append(result)
    kept = []
    for group in groups.values():
        chosen = [group[i] for i in newest_per_seed(group, [None] * len(group))]
        kept.append(sorted(chosen, key=lambda r: r["seed"]))
    return kept


def _field_text(result: Mapping[str, Any], path: str) -> str | None:
    """A recorded field as `leaderboard()` writes it in a group column; None when this result
    does not record it."""
    return group_text(result, path)


def _fits(row: Row, result: Mapping[str, Any], texts: list[str | None]) -> bool:
    if (row.attack, row.defense) != (result["attack"]["name"], result["defense"]["name"]):
        return False
    return all(text is None or text == value for text, value in zip(texts, row.groups, strict=True))


def _group_names(rows: list[Row], experiments: list[list[Mapping[str, Any]]],
                 results: Sequence[Mapping[str, Any]], width: int) -> list[str | None]:  # fmt: skip
    """For each group column, the recorded field that gives every row its value there."""
    if not width:
        return []
    candidates = sorted(varying([[settings(r) for r in results]]))
    texts = {path: [_field_text(group[0], path) for group in experiments] for path in candidates}
    names: list[str | None] = []
    for k in range(width):
        valid = [p for p in candidates if _explains(rows, experiments, texts[p], k)]
        shown = split_columns(valid, [settings(group[0]) for group in experiments])
        names.append(shown[0] if shown else None)
    return names


def _explains(rows: list[Row], experiments: list[list[Mapping[str, Any]]],
              texts: list[str | None], k: int) -> bool:  # fmt: skip
    """Whether a field's values are column k: every experiment's value is the column's value
    of some row of its attack and defense, and every row's value is some experiment's."""
    seen = {(g[0]["attack"]["name"], g[0]["defense"]["name"], t)
            for g, t in zip(experiments, texts, strict=True)}  # fmt: skip
    shown = {(row.attack, row.defense, row.groups[k]) for row in rows}
    known = {item for item in seen if item[2] is not None}
    return (
        bool(known)
        and known <= shown
        and all(item in seen or (item[0], item[1], None) in seen for item in shown)
    )
