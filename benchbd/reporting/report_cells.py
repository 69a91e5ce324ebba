"""The leaderboard's rows with the result files behind each, for the site's configurations.

`tabulate()` already knows each row's files (`Row.members`, one per seed, the newest when a
seed was run twice) and the names of the columns that split rows (`Board.group_by`); the site
shows both, and ranks the rows by the same rule as every table (benchbd.reporting.ranking).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchbd.reporting.board import Row
from benchbd.reporting.leaderboard import tabulate
from benchbd.reporting.ranking import DEFAULT_CA_TOLERANCE


@dataclass(frozen=True)
class Cell:
    """One row of the table and the result files it averages (one per seed, by seed)."""

    row: Row
    results: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Table:
    """The site's table: its cells in the leaderboard's order, the names of the settings that
    split rows, the sort column and CA tolerance of its ranking, and the table's warnings."""

    cells: list[Cell]
    group_names: list[str | None]
    sort: str = "after_asr"
    tolerance: float = DEFAULT_CA_TOLERANCE
    warnings: list[str] = field(default_factory=list)


def table(results: Sequence[Mapping[str, Any]],
          ca_tolerance: float = DEFAULT_CA_TOLERANCE) -> Table:  # fmt: skip
    board = tabulate(list(results), ca_tolerance=ca_tolerance)
    cells = [Cell(row, tuple(results[i] for i in row.members)) for row in board.rows]
    return Table(cells, list(board.group_by), board.sort, board.tolerance, board.warnings)
