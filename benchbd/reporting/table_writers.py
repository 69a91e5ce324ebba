"""Tables as text: markdown, CSV, LaTeX and HTML, the one writer of every table benchbd prints.

The leaderboard and its per-seed view (reporting.leaderboard_tables), the trade-off curves'
summary (reporting.curves) and the claims page (reporting.claim_writers) each make their cells
and hand them here: cell texts with the rows to mark best for markdown, HTML and LaTeX
(`write_text`), a frame of numbers as numbers for CSV (`write_csv`). Every table is written by
pandas (`to_markdown` through tabulate, `to_csv`, `Styler.to_latex` through jinja2,
`to_html`), so every format escapes, aligns and marks the best rows (bold) the same way. A
markdown table is written so that a copy kept in git changes only where its numbers do. The
rich tables of the CLI are drawn from the same cell texts.

pandas is imported on first use, not with this module.
"""

from __future__ import annotations

import html
import textwrap
from typing import TYPE_CHECKING

from benchbd.core.errors import BenchbdError

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("rich", "markdown", "csv", "latex", "html")  # rich: the CLI's terminal table
NOTE_WIDTH = 96  # a LaTeX note's comment lines


def check_format(fmt: str, formats: tuple[str, ...] = FORMATS) -> None:
    """Refuse a format no writer has (rich is the CLI's, never written as text here)."""
    if fmt not in formats or fmt == "rich":
        raise BenchbdError(f"unknown format {fmt!r}; choose from {', '.join(formats)}")


def write_csv(frame: pd.DataFrame, float_format: str | None = "%.6f") -> str:
    """A frame as CSV: numbers as numbers (`float_format`; None: Python's shortest text), empty
    where there is none, no index, one line ending."""
    return frame.to_csv(index=False, lineterminator="\n", float_format=float_format, na_rep="")


def write_text(fmt: str, heads: list[str], texts: list[list[str]], best: list[bool],
               numbers: int, note: str | None = None) -> str:  # fmt: skip
    """A table of cell texts as markdown, HTML or LaTeX, best rows in bold, and `note` after
    it: a paragraph in markdown and HTML, a comment in LaTeX. `numbers`: its number columns,
    the last ones, which LaTeX aligns right with the one column before them."""
    check_format(fmt, ("markdown", "html", "latex"))
    if fmt == "markdown":
        table = _markdown(heads, texts, best)
    elif fmt == "html":
        table = _html(heads, texts, best)
    else:
        table = _latex(heads, texts, best, numbers)
    return table + _note(fmt, note)


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
    """A booktabs tabular: text columns left, the last `numbers` + 1 columns right."""
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


def _note(fmt: str, note: str | None) -> str:
    if not note:
        return ""
    if fmt == "markdown":
        return f"\n{note}\n"
    if fmt == "html":
        return f'<p class="caption">{html.escape(note)}</p>\n'
    return "".join(f"% {line}\n" for line in textwrap.wrap(note, NOTE_WIDTH))
