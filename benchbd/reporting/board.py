"""A leaderboard as data: its rows (`Row`) and the table they make (`Board`).

`reporting.leaderboard.tabulate` computes a Board from result files; the writers
(reporting.leaderboard_tables), the plots, the site and the CLI read it. Kept apart from the
computation so that what reads a board never imports what makes one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from benchbd.reporting.ranking import DEFAULT_CA_TOLERANCE
from benchbd.reporting.spreads import SeedSpread
from benchbd.reporting.table_columns import DEFAULT_SORT

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Row:
    attack: str
    defense: str
    seeds: int
    spreads: dict[str, SeedSpread]  # by column key: every metric recorded, shown or not
    groups: tuple[str, ...] = ()  # values of the group columns, in order
    best: bool = False
    baseline: bool = False  # the defense is a reference point (never marked best)
    rank: int = 0  # 1, 2, ... within its attack and setting (reporting.ranking); 0: unranked
    rank_text: str = ""  # the rank column: the rank, "baseline", or "unranked: <why>"
    eligible: bool = True  # usable model: CA drop within the tolerance, every seed trained
    ca_drop: float | None = None  # mean over seeds, before - after on one classifier
    members: tuple[int, ...] = ()  # the results averaged (indices into the results given)
    basis: str = "zero-shot"  # the classifier of before and after: "linear-probe" for a head


@dataclass(frozen=True)
class Board:
    """The rows, the names of their group columns (those asked for, then the settings that
    split rows of one attack and defense) and what the reader should be told about them."""

    rows: list[Row]
    group_by: list[str]
    warnings: list[str]
    sort: str = DEFAULT_SORT
    tolerance: float = DEFAULT_CA_TOLERANCE
    per_result: pd.DataFrame | None = None  # every metric of every result, by result index
    scope: tuple[str, ...] = ()  # the group columns that separate rankings (not a defense's)
