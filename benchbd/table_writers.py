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
from collections.abc import Sequence
from typing import TYPE_CHECKING

from benchbd.errors import BenchbdError
from benchbd.table_columns import shown_columns

if TYPE_CHECKING:
    from benchbd.leaderboard import Row, SeedSpread

FORMATS = ("rich", "markdown", "csv", "latex", "html")
_NO_SPREAD = "-"  # the cell of a metric a row does not record, as SeedSpread(None, None) writes it


def headers(group_by: list[str] | None = None, visibility: bool = False,
            columns: Sequence[str] | None = None) -> list[str]:  # fmt: skip
    return [*(group_by or []), "attack", "defense", "seeds",
            *[h for _, h in shown_columns(visibility, columns)]]  # fmt: skip


def row_texts(row: Row, visibility: bool = False,
              columns: Sequence[str] | None = None) -> list[str]:  # fmt: skip
    numbers = [_spread_text(row.spreads.get(key)) for key, _ in shown_columns(visibility, columns)]
    return [*row.groups, row.attack, row.defense, str(row.seeds), *numbers]


def _spread_text(spread: SeedSpread | None) -> str:
    return _NO_SPREAD if spread is None else spread.text()


def _mean_std(spread: SeedSpread | None) -> tuple[float | None, float | None]:
    return (None, None) if spread is None else (spread.mean, spread.std)


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
    """Numbers as numbers: each metric's mean and std in columns of their own, 6 decimals,
    empty where there is none; `best` is 1 or 0."""
    import pandas as pd

    names = [*group_by, "attack", "defense", "seeds", "best",
             *[f"{key}_{part}" for key, _ in shown for part in ("mean", "std")]]  # fmt: skip
    records = []
    for row in rows:
        spreads = [row.spreads.get(key) for key, _ in shown]
        records.append([*row.groups, row.attack, row.defense, row.seeds, int(row.best),
                        *[value for s in spreads for value in _mean_std(s)]])  # fmt: skip
    frame = pd.DataFrame(records, columns=names)
    numbers = names[len(names) - 2 * len(shown) :]
    frame[numbers] = frame[numbers].astype(float)
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
           visibility: bool = False, columns: Sequence[str] | None = None) -> str:  # fmt: skip
    """Markdown (GFM), CSV (means and stds in their own columns), LaTeX (a booktabs tabular)
    or HTML (a <table>), written by pandas; the best defense of each attack in bold (CSV: a
    `best` column). `visibility` adds PSNR, SSIM and L-inf; `columns` picks the metric
    columns (the default ones if None)."""
    if fmt not in FORMATS or fmt == "rich":
        raise BenchbdError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    shown = shown_columns(visibility, columns)
    if fmt == "csv":
        return _csv(rows, list(group_by or []), shown)
    heads = headers(group_by, visibility, columns)
    texts = [row_texts(row, visibility, columns) for row in rows]
    best = [row.best for row in rows]
    return text_table(fmt, heads, texts, best, len(shown))


def text_table(fmt: str, heads: list[str], texts: list[list[str]], best: list[bool],
               numbers: int) -> str:  # fmt: skip
    """A table of cell texts as markdown, HTML or LaTeX (`numbers`: its right-aligned number
    columns), best rows in bold: the one writer of every table benchbd prints."""
    if fmt == "markdown":
        return _markdown(heads, texts, best)
    if fmt == "html":
        return _html(heads, texts, best)
    return _latex(heads, texts, best, numbers)
