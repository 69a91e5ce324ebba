"""Tables as text: markdown, CSV, LaTeX and HTML, the one writer of every table benchbd prints.

The leaderboard's rows (`render`) and any other table of cell texts (`text_table`, e.g. the
curve summary) go through pandas' writers (`to_markdown` through tabulate, `to_csv`,
`Styler.to_latex` through jinja2, `to_html`), so that every format escapes, aligns and marks the
best rows (bold; CSV: a `best` column) the same way. A markdown table is written so that a copy
kept in git changes only where its numbers do. The rich table of the CLI is drawn from the same
`headers` and `row_texts`.

pandas is imported on first use, not with this module.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchbd.core.errors import BenchbdError
from benchbd.reporting.ranking import RANK_HEADER, rule_text
from benchbd.reporting.spreads import CAPTION
from benchbd.reporting.table_columns import column_header, shown_columns

if TYPE_CHECKING:
    from benchbd.reporting.leaderboard import Board, Row
    from benchbd.reporting.spreads import SeedSpread

FORMATS = ("rich", "markdown", "csv", "latex", "html")
_NO_SPREAD = "-"  # the cell of a metric a row does not record, as SeedSpread(None, None) writes it


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
    return _NO_SPREAD if spread is None else spread.text(seeds)


SPREAD_PARTS = ("mean", "std", "low", "high", "n")  # a metric's CSV columns, KEY_PART


def _parts(spread: SeedSpread | None) -> list[float | None]:
    if spread is None or spread.mean is None:
        return [None] * len(SPREAD_PARTS)
    return [spread.mean, spread.std, spread.low, spread.high, spread.n]


def _markdown_format():
    """GFM's pipe table as tabulate writes it, with a `|---|` delimiter row whatever the
    column widths, so that a table kept in git changes only where its numbers do."""
    from tabulate import DataRow, TableFormat

    def delimiter(widths: list[int], _aligns: list[str]) -> str:
        return "|" + "---|" * len(widths)

    cells = DataRow("|", "|", "|")
    return TableFormat(lineabove=None, linebelowheader=delimiter, linebetweenrows=None,
                       linebelow=None, headerrow=cells, datarow=cells, padding=1,
                       with_header_hide=None)  # fmt: skip


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
    return frame.to_csv(index=False, lineterminator="\n", float_format="%.6f", na_rep="")


def _markdown(heads: list[str], texts: list[list[str]], best: list[bool]) -> str:
    import pandas as pd

    def cell(text: str, bold: bool) -> str:
        text = text.replace("|", r"\|")  # a pipe inside a cell would end it
        return f"**{text}**" if bold else text

    table = pd.DataFrame([[cell(t, b) for t in line] for line, b in zip(texts, best, strict=True)],
                         columns=range(len(heads)))  # fmt: skip
    return table.to_markdown(index=False, headers=[cell(h, False) for h in heads],
                             tablefmt=_markdown_format(), disable_numparse=True,
                             stralign=None, numalign=None) + "\n"  # fmt: skip


def _html(heads: list[str], texts: list[list[str]], best: list[bool]) -> str:
    import pandas as pd

    def cell(text: str, bold: bool) -> str:
        text = html.escape(text)
        return f"<strong>{text}</strong>" if bold else text

    table = pd.DataFrame([[cell(t, b) for t in line] for line, b in zip(texts, best, strict=True)],
                         columns=heads)  # fmt: skip
    return table.to_html(index=False, escape=False, classes="leaderboard") + "\n"


def _latex(heads: list[str], texts: list[list[str]], best: list[bool], numbers: int) -> str:
    """A booktabs tabular: text columns left, the seeds and `numbers` metric columns right."""
    import pandas as pd

    # A second, hidden header level keeps the columns unique, as Styler.apply needs, when a
    # group-by field shares its name with another column (--group-by attack).
    labels = pd.MultiIndex.from_arrays([heads, range(len(heads))])
    table = pd.DataFrame(texts, columns=labels)
    bold = pd.DataFrame([["textbf:--rwrap;" if b else ""] * len(heads) for b in best],
                        index=table.index, columns=labels)  # fmt: skip
    styler = (table.style.hide(axis="index").hide(axis="columns", level=1)
              .format(lambda text: text.replace("±", r"$\pm$"), escape="latex")
              .format_index(escape="latex", axis="columns")
              .apply(lambda _: bold, axis=None))  # fmt: skip
    left = len(heads) - numbers - 1
    return styler.to_latex(column_format="l" * left + "r" * (numbers + 1), hrules=True,
                           sparse_columns=False)  # fmt: skip


def render(rows: list[Row], fmt: str, group_by: list[str] | None = None,
           visibility: bool = False, columns: Sequence[str] | None = None,
           note: str | None = None) -> str:  # fmt: skip
    """Markdown (GFM), CSV (mean, std, interval and n in their own columns), LaTeX (a booktabs
    tabular) or HTML (a <table>), written by pandas; the best defense of each attack and
    setting in bold (CSV: a `best` column). `visibility` adds PSNR, SSIM and L-inf; `columns`
    picks the metric columns (the default ones if None); `note` (the interval and the ranking
    rule, `caption`) follows the table: a paragraph in markdown and HTML, a comment in LaTeX,
    nothing in CSV, whose columns say it."""
    if fmt not in FORMATS or fmt == "rich":
        raise BenchbdError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    shown = shown_columns(visibility, columns)
    if fmt == "csv":
        return _csv(rows, list(group_by or []), shown)
    heads = headers(group_by, visibility, columns)
    texts = [row_texts(row, visibility, columns) for row in rows]
    best = [row.best for row in rows]
    return text_table(fmt, heads, texts, best, len(shown) + 1) + _note(fmt, note)


def _note(fmt: str, note: str | None) -> str:
    if not note:
        return ""
    if fmt == "markdown":
        return f"\n{note}\n"
    if fmt == "html":
        return f'<p class="caption">{html.escape(note)}</p>\n'
    return "".join(f"% {line}\n" for line in _wrapped(note))


def _wrapped(text: str, width: int = 96) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def text_table(fmt: str, heads: list[str], texts: list[list[str]], best: list[bool],
               numbers: int) -> str:  # fmt: skip
    """A table of cell texts as markdown, HTML or LaTeX (`numbers`: its right-aligned number
    columns), best rows in bold: the one writer of every table benchbd prints."""
    if fmt == "markdown":
        return _markdown(heads, texts, best)
    if fmt == "html":
        return _html(heads, texts, best)
    return _latex(heads, texts, best, numbers)


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
    from benchbd.reporting.ranking import untrained

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
        return _NO_SPREAD
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
    if fmt not in FORMATS or fmt == "rich":
        raise BenchbdError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    heads = per_seed_headers(board.group_by, visibility, columns)
    records = per_seed_records(board, results, visibility, columns)
    if fmt == "csv":
        import pandas as pd

        names = [*board.group_by, "attack", "defense", "seed", "file", "ranking", "ca_drop",
                 "trained", *[key for key, _ in shown_columns(visibility, columns)]]  # fmt: skip
        frame = pd.DataFrame(records, columns=names).assign(
            trained=lambda f: f["trained"].astype(int)
        )
        return frame.to_csv(index=False, lineterminator="\n", float_format="%.6f", na_rep="")
    texts = per_seed_texts(records)
    numbers = len(heads) - len(board.group_by) - 5
    return text_table(fmt, heads, texts, [False] * len(texts), numbers)
