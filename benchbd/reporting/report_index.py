"""The index page of a site of several grids (`benchbd report --all`): one line per grid.

Each line links the grid's own page and says what it holds (result files, rows, warnings); the
page above the list states the interval and the ranking rule every grid's page applies
(benchbd.reporting.ranking).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from benchbd.reporting.ranking import rule_text
from benchbd.reporting.report_html import GENERATOR, escape, head
from benchbd.reporting.spreads import CAPTION


@dataclass(frozen=True)
class GridLine:
    """One grid as the index lists it: its name, its page (relative to the index), and how
    many result files, rows and warnings it has."""

    name: str
    link: str
    results: int
    rows: int
    warnings: int


@dataclass(frozen=True)
class ZooLine:
    """One zoo as the index lists it: its name, its page, its models, detectors and warnings."""

    name: str
    link: str
    models: int
    detectors: int
    warnings: int


def index_page(entries: Sequence[GridLine], tolerance: float, version: str,
               zoos: Sequence[ZooLine] = ()) -> str:  # fmt: skip
    """The index: a table of grids, each linking its own page, and one of zoos if any."""
    lines = []
    for grid in entries:
        lines.append(f'<tr><td><a href="{escape(grid.link)}">{escape(grid.name)}</a></td>'
                     f'<td class="num">{grid.results}</td><td class="num">{grid.rows}</td>'
                     f'<td class="num">{grid.warnings}</td></tr>')  # fmt: skip
    title = "benchbd reference results"
    rule = rule_text("ASR after", tolerance)
    parts = [
        head(title),
        f"<h1>{escape(title)}</h1>",
        f"<p>Every grid of committed result files, one page each. {escape(CAPTION)} "
        f"{escape(rule)}</p>",
        '<div class="scroll"><table id="board"><thead><tr><th>grid</th><th>result files</th>'
        "<th>rows</th><th>warnings</th></tr></thead><tbody>",
        "\n".join(lines),
        "</tbody></table></div>",
        _zoos(zoos),
        f"<footer>Written by benchbd {escape(version)} (<code>{GENERATOR} --all</code>). "
        "Nothing on this page is fetched from elsewhere.</footer>",
        "</body>\n</html>\n",
    ]
    return "\n".join(part for part in parts if part)


def _zoos(zoos: Sequence[ZooLine]) -> str:
    """The zoos' table: model detectors measured over many models (`benchbd zoo --detect`)."""
    if not zoos:
        return ""
    lines = "\n".join(
        f'<tr><td><a href="{escape(zoo.link)}">{escape(zoo.name)}</a></td>'
        f'<td class="num">{zoo.models}</td><td class="num">{zoo.detectors}</td>'
        f'<td class="num">{zoo.warnings}</td></tr>'
        for zoo in zoos
    )  # fmt: skip
    return ("<h2>Model zoos</h2><p>Model detectors, each measured over a zoo of clean and "
            "poisoned models: one page per zoo.</p>"
            '<div class="scroll"><table id="zoos"><thead><tr><th>zoo</th><th>models</th>'
            f"<th>detectors</th><th>warnings</th></tr></thead><tbody>\n{lines}\n"
            "</tbody></table></div>")  # fmt: skip
