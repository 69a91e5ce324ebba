"""The leaderboard: a pure function of a folder of result files.

One row per (attack, defense) and any `group_by` fields, metrics averaged over seeds with their
standard deviation; the best defense of each attack is marked. Rendered as markdown, CSV,
LaTeX or HTML here and as a rich table by the CLI. Every choice of direction (sorting, the best
row) comes from HIGHER_IS_BETTER, so ASR is better low and CA, RA and DER better high.
"""

from __future__ import annotations

import csv
import html
import io
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbd.errors import BenchbdError
from benchbd.results import HIGHER_IS_BETTER, read_result

COLUMNS = [  # (key, header): metric keys are "<when>_<metric>"
    ("before_ca", "CA before"),
    ("before_asr", "ASR before"),
    ("after_ca", "CA after"),
    ("after_asr", "ASR after"),
    ("der", "DER"),
]
FORMATS = ("rich", "markdown", "csv", "latex", "html")
# Short names for the recorded fields people filter and group by most.
FIELD_ALIASES = {
    "dataset": "dataset.name",
    "poison_rate": "poison.rate",
    "poison_count": "poison.count",
    "target": "target.name",
    "classifier": "metrics.after.classifier",
}


@dataclass(frozen=True)
class Cell:
    """A metric over seeds: mean and standard deviation (0 for a single seed); None if absent."""

    mean: float | None
    std: float | None

    def text(self) -> str:
        if self.mean is None:
            return "-"
        return f"{self.mean:.3f}" if not self.std else f"{self.mean:.3f} ± {self.std:.3f}"


@dataclass(frozen=True)
class Row:
    attack: str
    defense: str
    seeds: int
    cells: dict[str, Cell]
    groups: tuple[str, ...] = ()  # values of the group_by fields, in order
    best: bool = False


def load_folder(folder: Path) -> tuple[list[dict], list[str]]:
    """Every result file in a folder; unreadable ones become warnings, not failures."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchbdError(f"results folder {str(folder)!r} does not exist")
    results, warnings = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            results.append(read_result(path))
        except ValueError as exc:
            warnings.append(f"skipped {exc}")
    if not results:
        raise BenchbdError(f"no result files in {str(folder)!r}")
    return results, warnings


def field_value(result: dict, name: str) -> Any:
    """A recorded field by dotted path ('defense.params.inmodal_weight') or alias ('dataset')."""
    value: Any = result
    for part in FIELD_ALIASES.get(name, name).split("."):
        if not isinstance(value, dict) or part not in value:
            raise BenchbdError(f"result files have no field {name!r} (use a dotted path such "
                               f"as dataset.name or defense.params.epochs)")  # fmt: skip
        value = value[part]
    return value


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def parse_filters(items: list[str]) -> list[tuple[str, str]]:
    filters = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BenchbdError(f"--filter {item!r}: expected FIELD=VALUE")
        filters.append((name.strip(), value.strip()))
    return filters


def _matches(value: Any, wanted: str) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return abs(float(wanted) - float(value)) <= 1e-9 * max(1.0, abs(float(value)))
        except ValueError:
            return False
    return _text(value) == wanted


def apply_filters(results: list[dict], filters: list[tuple[str, str]]) -> list[dict]:
    """Keep the results whose every filtered field equals its value (numbers compared as
    numbers, so poison_rate=0.03 matches 0.030000)."""
    return [r for r in results if all(_matches(field_value(r, f), v) for f, v in filters)]


def _value(result: dict, key: str) -> float | None:
    if key == "der":
        return result.get("der")
    when, metric = key.split("_", 1)
    return result["metrics"][when].get(metric)


def _cell(values: list[float | None]) -> Cell:
    present = [v for v in values if v is not None]
    if not present:
        return Cell(None, None)
    std = statistics.stdev(present) if len(present) > 1 else 0.0
    return Cell(statistics.fmean(present), std)


def _direction(key: str) -> int:
    """+1 when a larger value of this column is better, -1 when smaller is."""
    return 1 if HIGHER_IS_BETTER[key.rpartition("_")[2]] else -1


def leaderboard(results: list[dict], group_by: list[str] | None = None,
                sort: str = "after_asr") -> list[Row]:  # fmt: skip
    """Rows sorted by group, attack, then `sort` best first; the best defense (other than
    `none`) of each attack and group is marked."""
    if sort not in dict(COLUMNS):
        raise BenchbdError(f"cannot sort by {sort!r}; choose from {', '.join(dict(COLUMNS))}")
    group_by = group_by or []
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for result in results:
        extra = tuple(_text(field_value(result, name)) for name in group_by)
        groups[(extra, result["attack"]["name"], result["defense"]["name"])].append(result)
    rows = [
        Row(attack, defense, len({r["seed"] for r in group}),
            {key: _cell([_value(r, key) for r in group]) for key, _ in COLUMNS}, extra)
        for (extra, attack, defense), group in groups.items()
    ]  # fmt: skip
    sign = _direction(sort)

    def order(row: Row):
        value = row.cells[sort].mean
        return (row.groups, row.attack, value is None, -sign * (value or 0.0), row.defense)

    rows.sort(key=order)
    best: dict[tuple, Row] = {}
    for row in rows:  # already best first within each (group, attack)
        if row.defense != "none" and row.cells[sort].mean is not None:
            best.setdefault((row.groups, row.attack), row)
    winners = {id(row) for row in best.values()}
    return [Row(r.attack, r.defense, r.seeds, r.cells, r.groups, id(r) in winners) for r in rows]


def headers(group_by: list[str] | None = None) -> list[str]:
    return [*(group_by or []), "attack", "defense", "seeds", *[h for _, h in COLUMNS]]


def row_texts(row: Row) -> list[str]:
    return [*row.groups, row.attack, row.defense, str(row.seeds),
            *[row.cells[k].text() for k, _ in COLUMNS]]  # fmt: skip


def render(rows: list[Row], fmt: str, group_by: list[str] | None = None) -> str:
    """Markdown, CSV (means and stds in their own columns), LaTeX or HTML; the best defense of
    each attack in bold (CSV: a `best` column)."""
    heads = headers(group_by)
    if fmt == "markdown":
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        for row in rows:
            texts = row_texts(row)
            if row.best:
                texts = [f"**{t}**" for t in texts]
            lines.append("| " + " | ".join(texts) + " |")
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            [*(group_by or []), "attack", "defense", "seeds", "best"]
            + [f"{key}_{part}" for key, _ in COLUMNS for part in ("mean", "std")]
        )
        for row in rows:
            values = []
            for key, _ in COLUMNS:
                cell = row.cells[key]
                values += ["" if cell.mean is None else f"{cell.mean:.6f}",
                           "" if cell.std is None else f"{cell.std:.6f}"]  # fmt: skip
            writer.writerow([*row.groups, row.attack, row.defense, row.seeds, int(row.best),
                             *values])  # fmt: skip
        return buffer.getvalue()
    if fmt == "latex":

        def escape(text: str) -> str:
            return text.replace("_", r"\_").replace("±", r"$\pm$")

        n_left = len(heads) - len(COLUMNS) - 1
        lines = [
            r"\begin{tabular}{" + "l" * n_left + "r" * (len(COLUMNS) + 1) + "}",
            r"\toprule",
            " & ".join(escape(h) for h in heads) + r" \\",
            r"\midrule",
        ]
        for row in rows:
            texts = [escape(t) for t in row_texts(row)]
            if row.best:
                texts = [rf"\textbf{{{t}}}" for t in texts]
            lines.append(" & ".join(texts) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"
    if fmt == "html":
        lines = ["<table>", "  <thead><tr>" + "".join(f"<th>{html.escape(h)}</th>"
                                                     for h in heads) + "</tr></thead>",
                 "  <tbody>"]  # fmt: skip
        for row in rows:
            cells = [html.escape(t) for t in row_texts(row)]
            if row.best:
                cells = [f"<strong>{c}</strong>" for c in cells]
            attrs = ' class="best"' if row.best else ""
            lines.append(f"    <tr{attrs}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        lines += ["  </tbody>", "</table>"]
        return "\n".join(lines) + "\n"
    raise BenchbdError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
