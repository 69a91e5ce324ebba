"""The leaderboard as a table: its cells, and its text in every format (`render`), one line per
row or one per result file (`render_per_seed`, `--per-seed`).

A row's cells are its group values, attack, defense, seeds, rank and each shown metric's mean
with its interval (`row_texts`); under every leaderboard, the interval and the ranking rule
(`caption`). The text is written by the one table writer (reporting.table_writers): bold for
the best rows; CSV keeps numbers as numbers, each metric's mean, std, interval and n in columns
of their own. The CLI's rich table is drawn from the same `headers` and `row_texts`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchbd.reporting.board import Board, Row
from benchbd.reporting.ranking import RANK_HEADER, rule_text, untrained
from benchbd.reporting.spreads import CAPTION, SeedSpread
from benchbd.reporting.table_columns import column_header, shown_columns
from benchbd.reporting.table_writers import check_format, write_csv, write_text

NO_VALUE = "-"  # the cell of a metric a row does not record, as SeedSpread(None, None) writes it
SPREAD_PARTS = ("mean", "std", "low", "high", "n")  # a metric's CSV columns, KEY_PART


def headers(group_by: list[str] | None = None, visibility: bool = False,
            columns: Sequence[str] | None = None) -> list[str]:  # fmt: skip
    return [*(group_by or []), "attack", "defense", "seeds", RANK_HEADER,
            *[h for _, h in shown_columns(visibility, columns)]]  # fmt: skip


def row_texts(row: Row, visibility: bool = False,
              columns: Sequence[str] | None = None) -> list[str]:  # fmt: skip
    numbers = [_spread_text(row.spreads.get(key), row.seeds)
               for key, _ in shown_columns(visibility, columns)]  # fmt: skip
    return [*row.groups, row.attack, row.defense, str(row.seeds), row.rank_text, *numbers]


def caption(sort: str, tolerance: float) -> str:
    """What every leaderboard says under it: the interval and the ranking rule."""
    return f"{CAPTION} {rule_text(column_header(sort), tolerance)}"


def _spread_text(spread: SeedSpread | None, seeds: int | None = None) -> str:
    return NO_VALUE if spread is None else spread.text(seeds)


def _parts(spread: SeedSpread | None) -> list[float | None]:
    if spread is None or spread.mean is None:
        return [None] * len(SPREAD_PARTS)
    return [spread.mean, spread.std, spread.low, spread.high, spread.n]


def _csv(rows: list[Row], group_by: list[str], shown: list[tuple[str, str]]) -> str:
    """Numbers as numbers: each metric's mean, std, 95 % interval (low, high) and n in columns
    of their own, 6 decimals, empty where there is none; `best` and `eligible` are 1 or 0,
    `rank` 0 for an unranked row, `ranking` the rank column's text, `ca_drop` the mean CA
    drop the ranking read."""
    import pandas as pd

    numbers = [f"{key}_{part}" for key, _ in shown for part in SPREAD_PARTS]
    names = [*group_by, "attack", "defense", "seeds", "best", "rank", "eligible", "ranking",
             "ca_drop", *numbers]  # fmt: skip
    records = []
    for row in rows:
        spreads = [row.spreads.get(key) for key, _ in shown]
        records.append([*row.groups, row.attack, row.defense, row.seeds, int(row.best),
                        row.rank, int(row.eligible), row.rank_text, row.ca_drop,
                        *[value for s in spreads for value in _parts(s)]])  # fmt: skip
    frame = pd.DataFrame(records, columns=names)
    frame[["ca_drop", *numbers]] = frame[["ca_drop", *numbers]].astype(float)
    counts = [name for name in numbers if name.endswith("_n")]
    frame[counts] = frame[counts].astype("Int64")
    return write_csv(frame)


def render(rows: list[Row], fmt: str, group_by: list[str] | None = None,
           visibility: bool = False, columns: Sequence[str] | None = None,
           note: str | None = None) -> str:  # fmt: skip
    """Markdown (GFM), CSV (mean, std, interval and n in their own columns), LaTeX (a booktabs
    tabular) or HTML (a <table>); the best defense of each attack and setting in bold (CSV: a
    `best` column). `visibility` adds PSNR, SSIM and L-inf; `columns` picks the metric columns
    (the default ones if None); `note` (the interval and the ranking rule, `caption`) follows
    the table: a paragraph in markdown and HTML, a comment in LaTeX, nothing in CSV, whose
    columns say it."""
    check_format(fmt)
    shown = shown_columns(visibility, columns)
    if fmt == "csv":
        return _csv(rows, list(group_by or []), shown)
    heads = headers(group_by, visibility, columns)
    texts = [row_texts(row, visibility, columns) for row in rows]
    return write_text(fmt, heads, texts, [row.best for row in rows], len(shown) + 1, note)


# --- one line per result file ------------------------------------------------------------


def per_seed_headers(group_by: list[str], visibility: bool = False,
                     columns: Sequence[str] | None = None) -> list[str]:  # fmt: skip
    return [*group_by, "attack", "defense", "seed", "file", RANK_HEADER, "CA drop", "trained",
            *[h for _, h in shown_columns(visibility, columns)]]  # fmt: skip


def per_seed_records(board: Board, results: Sequence[Mapping[str, Any]], visibility: bool = False,
                     columns: Sequence[str] | None = None) -> list[list[Any]]:  # fmt: skip
    """`--per-seed`: a line per result file a row averages, in table order: the row's group
    values, attack, defense and rank, the file's seed and name, its CA drop (on the classifier
    its after uses), whether its model trained, and its own numbers (None where absent)."""
    shown = shown_columns(visibility, columns)
    frame = board.per_result
    lines = []
    for row in board.rows:
        for i in row.members:
            result = results[i]
            path = getattr(result, "path", None)
            values = [None if frame is None or key not in frame.columns else
                      float(frame.at[i, key]) for key, _ in shown]  # fmt: skip
            drop = None if frame is None else float(frame.at[i, "before_ca"]
                                                    - frame.at[i, "after_ca"])  # fmt: skip
            lines.append([*row.groups, row.attack, row.defense, result.get("seed"),
                          Path(path).name if path else "", row.rank_text, drop,
                          not untrained(result), *values])  # fmt: skip
    return lines


def _number_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NO_VALUE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else "nan"
    return str(value)


def per_seed_texts(records: list[list[Any]]) -> list[list[str]]:
    return [[_number_text(value) for value in line] for line in records]


def render_per_seed(board: Board, results: Sequence[Mapping[str, Any]], fmt: str,
                    visibility: bool = False,
                    columns: Sequence[str] | None = None) -> str:  # fmt: skip
    """The per-seed view in a text format: CSV keeps numbers as numbers; nothing is bold."""
    check_format(fmt)
    heads = per_seed_headers(board.group_by, visibility, columns)
    records = per_seed_records(board, results, visibility, columns)
    if fmt == "csv":
        import pandas as pd

        names = [*board.group_by, "attack", "defense", "seed", "file", "ranking", "ca_drop",
                 "trained", *[key for key, _ in shown_columns(visibility, columns)]]  # fmt: skip
        frame = pd.DataFrame(records, columns=names).assign(
            trained=lambda f: f["trained"].astype(int)
        )
        return write_csv(frame)
    texts = per_seed_texts(records)
    numbers = len(heads) - len(board.group_by) - 5
    return write_text(fmt, heads, texts, [False] * len(texts), numbers)
