"""The leaderboard: a pure function of a folder of result files.

One row per (attack, defense), metrics averaged over seeds (with their standard deviation),
rendered as markdown, CSV or LaTeX here and as a rich table by the CLI.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from benchbd.errors import BenchbdError
from benchbd.evaluate import HIGHER_IS_BETTER
from benchbd.results import read_result

COLUMNS = [  # (key, header): metric keys are "<when>_<metric>"
    ("before_ca", "CA before"),
    ("before_asr", "ASR before"),
    ("after_ca", "CA after"),
    ("after_asr", "ASR after"),
    ("der", "DER"),
]
FORMATS = ("rich", "markdown", "csv", "latex")


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


def leaderboard(results: list[dict]) -> list[Row]:
    """Rows sorted by attack, then by ASR after the defense (lower is better)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for result in results:
        groups[(result["attack"]["name"], result["defense"]["name"])].append(result)
    rows = [
        Row(attack, defense, len({r["seed"] for r in group}),
            {key: _cell([_value(r, key) for r in group]) for key, _ in COLUMNS})
        for (attack, defense), group in groups.items()
    ]  # fmt: skip

    def order(row: Row):
        asr = row.cells["after_asr"].mean
        sign = 1 if not HIGHER_IS_BETTER["asr"] else -1
        return (row.attack, asr is None, sign * (asr or 0.0), row.defense)

    return sorted(rows, key=order)


def headers() -> list[str]:
    return ["attack", "defense", "seeds", *[header for _, header in COLUMNS]]


def row_texts(row: Row) -> list[str]:
    return [row.attack, row.defense, str(row.seeds), *[row.cells[k].text() for k, _ in COLUMNS]]


def render(rows: list[Row], fmt: str) -> str:
    """Markdown, CSV (means and stds in their own columns) or LaTeX."""
    if fmt == "markdown":
        lines = ["| " + " | ".join(headers()) + " |", "|" + "---|" * len(headers())]
        lines += ["| " + " | ".join(row_texts(row)) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            ["attack", "defense", "seeds"]
            + [f"{key}_{part}" for key, _ in COLUMNS for part in ("mean", "std")]
        )
        for row in rows:
            values = []
            for key, _ in COLUMNS:
                cell = row.cells[key]
                values += ["" if cell.mean is None else f"{cell.mean:.6f}",
                           "" if cell.std is None else f"{cell.std:.6f}"]  # fmt: skip
            writer.writerow([row.attack, row.defense, row.seeds, *values])
        return buffer.getvalue()
    if fmt == "latex":

        def escape(text: str) -> str:
            return text.replace("_", r"\_").replace("±", r"$\pm$")

        lines = [r"\begin{tabular}{ll" + "r" * (len(headers()) - 2) + "}", r"\toprule",
                 " & ".join(headers()) + r" \\", r"\midrule"]  # fmt: skip
        lines += [" & ".join(escape(t) for t in row_texts(row)) + r" \\" for row in rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"
    raise BenchbdError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
