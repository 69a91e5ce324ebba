"""The leaderboard: a pure function of a folder of result files.

One row per experiment (attack, defense and every other recorded setting, see
benchbd.experiments) and any `group_by` fields, metrics averaged over distinct seeds with their
standard deviation; the best defense of each attack is marked. Rendered as markdown, CSV,
LaTeX or HTML here and as a rich table by the CLI. Every choice of direction (sorting, the best
row) comes from HIGHER_IS_BETTER, so ASR is better low and CA, RA and DER better high.

What a reader could be misled by comes back as warning lines with the rows (only the CLI
prints): results of one attack that differ in a setting (rows split, the fields shown as
columns), a seed found twice (counted once), non-finite metrics (left out of means,
never best), and rows mixing CPU kernel levels or thread counts (not bit-comparable).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchbd.errors import BenchbdError
from benchbd.experiments import (
    experiment_key,
    newest_per_seed,
    settings,
    split_columns,
    varying,
)
from benchbd.results import HIGHER_IS_BETTER, is_baseline, read_result

COLUMNS = [  # (key, header): metric keys are "<when>_<metric>"
    ("before_ca", "CA before"),
    ("before_asr", "ASR before"),
    ("after_ca", "CA after"),
    ("after_asr", "ASR after"),
    ("der", "DER"),
]
# `--visibility`: the trigger's visibility a run recorded under extra.trigger_visibility (PSNR in
# dB, SSIM, L-inf as a fraction of 255), shown after the metrics; "-" where a file has none.
VISIBILITY_COLUMNS = [("psnr_db", "PSNR"), ("ssim", "SSIM"), ("linf", "L-inf")]
VISIBILITY_KEYS = frozenset(key for key, _ in VISIBILITY_COLUMNS)
# What --sort accepts: exactly the metric columns shown (RA is recorded but not a column).
SORT_CHOICES = tuple(key for key, _ in COLUMNS)
FORMATS = ("rich", "markdown", "csv", "latex", "html")
# Short names for the recorded fields people filter and group by most.
FIELD_ALIASES = {
    "attack": "attack.name",  # the recorded field is an object; its name is what people mean
    "defense": "defense.name",
    "dataset": "dataset.name",
    "poison_rate": "poison.rate",
    "poison_count": "poison.count",
    "target": "target.name",
    "classifier": "metrics.after.classifier",
}
SHORT_NAMES = {path: alias for alias, path in FIELD_ALIASES.items()}
# Runtime fields that change floating-point sums but not the experiment: a row mixing them is
# kept whole and named in a warning.
RUNTIME_FIELDS = (
    ("runtime.kernels.level", "CPU kernel levels"),
    ("runtime.threads", "runtime.threads"),
    ("runtime.pretrain_threads", "runtime.pretrain_threads"),
)
ABSENT = "-"  # a group-by value of a result that does not record the field


class ResultFile(dict):
    """A result as read from disk: the dict everything reads, plus the file it came from, so
    a warning can name the file."""

    def __init__(self, data: Mapping[str, Any], path: Path) -> None:
        super().__init__(data)
        self.path = Path(path)


@dataclass(frozen=True)
class SeedSpread:
    """One metric of one row, over its seeds: mean and standard deviation (0 for a single
    seed) of the finite values; None if there are none. `nonfinite` counts NaN or infinite
    values left out. What a table cell shows, as `text()`."""

    mean: float | None
    std: float | None
    nonfinite: int = 0

    def text(self) -> str:
        if self.mean is None:
            return "nan" if self.nonfinite else "-"
        text = f"{self.mean:.3f}" if not self.std else f"{self.mean:.3f} ± {self.std:.3f}"
        return f"{text} ({self.nonfinite} nan)" if self.nonfinite else text


@dataclass(frozen=True)
class Row:
    attack: str
    defense: str
    seeds: int
    spreads: dict[str, SeedSpread]  # by column key
    groups: tuple[str, ...] = ()  # values of the group columns, in order
    best: bool = False
    baseline: bool = False  # the defense is a reference point (never marked best)


@dataclass(frozen=True)
class Board:
    """The rows, the names of their group columns (those asked for, then the settings that
    split rows of one attack and defense) and what the reader should be told about them."""

    rows: list[Row]
    group_by: list[str]
    warnings: list[str]


def load_folder(folder: Path) -> tuple[list[dict], list[str]]:
    """Every result file in a folder (not its subfolders); files that are not results become
    warnings ("skipped <path>: <why>"), not failures. A folder with no result at all is an
    error that says why."""
    folder = Path(folder)
    if not folder.exists():
        raise BenchbdError(f"results folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise BenchbdError(f"{str(folder)!r} is not a folder; pass the folder of result files")
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".json"))
    except OSError as exc:
        raise BenchbdError(
            f"cannot read results folder {str(folder)!r} ({exc.strerror or exc})"
        ) from None
    results, warnings = [], []
    for name in names:
        try:
            results.append(ResultFile(read_result(folder / name), folder / name))
        except ValueError as exc:
            warnings.append(f"skipped {exc}")
    if results:
        return results, warnings
    if names:
        first = warnings[0].removeprefix("skipped ")
        files = f"none of the {len(names)} JSON files" if len(names) > 1 else "the one JSON file"
        raise BenchbdError(f"{files} in {str(folder)!r}: not a benchbd result ({first})")
    raise BenchbdError(f"no result files in {str(folder)!r}{_subfolder_hint(folder)}")


def _subfolder_hint(folder: Path) -> str:
    """Where the JSON files are when they lie one level or more down (`results/ablations`)."""
    found: list[str] = []
    try:
        for path in folder.rglob("*.json"):
            if str(path.parent) not in found:
                found.append(str(path.parent))
            if len(found) == 3:
                break
    except OSError:
        return ""
    if not found:
        return ""
    return f"; its subfolders hold JSON files ({', '.join(found)}): pass one of them"


def _lookup(result: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """(found, value) of a recorded field by dotted path ('defense.params.inmodal_weight') or
    alias ('dataset')."""
    value: Any = result
    for part in FIELD_ALIASES.get(name, name).split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _no_field(name: str) -> BenchbdError:
    return BenchbdError(f"result files have no field {name!r} (use a dotted path such as "
                        f"dataset.name or defense.params.epochs)")  # fmt: skip


def _require(results: Iterable[Mapping[str, Any]], name: str) -> None:
    """A field name is a mistake only if no result records it (older files may lack it)."""
    if not any(_lookup(r, name)[0] for r in results):
        raise _no_field(name)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _group_text(result: Mapping[str, Any], name: str) -> str:
    found, value = _lookup(result, name)
    return _text(value) if found else ABSENT


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
    numbers, so poison_rate=0.03 matches 0.030000); a result without the field is left out."""
    for name, _ in filters:
        _require(results, name)

    def keep(result: dict) -> bool:
        for name, wanted in filters:
            found, value = _lookup(result, name)
            if not found or not _matches(value, wanted):
                return False
        return True

    return [r for r in results if keep(r)]


def _value(result: Mapping[str, Any], key: str) -> float | None:
    if key in VISIBILITY_KEYS:  # files written before visibility was recorded have none
        return ((result.get("extra") or {}).get("trigger_visibility") or {}).get(key)
    if key == "der":
        return result.get("der")
    when, metric = key.split("_", 1)
    return result["metrics"][when].get(metric)


def _spread(values: list[float | None]) -> SeedSpread:
    present = [v for v in values if v is not None]
    finite = [v for v in present if math.isfinite(v)]
    nonfinite = len(present) - len(finite)
    if not finite:
        return SeedSpread(None, None, nonfinite)
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return SeedSpread(statistics.fmean(finite), std, nonfinite)


def _direction(key: str) -> int:
    """+1 when a larger value of this column is better, -1 when smaller is."""
    metric = key.split("_", 1)[1] if key.startswith(("before_", "after_")) else key
    return 1 if HIGHER_IS_BETTER[metric] else -1


def check_sort(sort: str) -> None:
    if sort not in SORT_CHOICES:
        raise BenchbdError(f"cannot sort by {sort!r}; choose from {', '.join(SORT_CHOICES)}")


def _name(result: Mapping[str, Any]) -> str:
    path = getattr(result, "path", None)
    if path is not None:
        return str(path)
    return f"{result['attack']['name']}/{result['defense']['name']} seed {result['seed']}"


def _listing(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def _natural(text: str) -> tuple[int, float, str]:
    """Group values sort as numbers when they are numbers (2 before 10)."""
    try:
        number = float(text)
    except ValueError:
        return (1, 0.0, text)
    return (0, number, text) if math.isfinite(number) else (1, 0.0, text)


def _row_name(row: Row, group_by: list[str]) -> str:
    groups = ", ".join(f"{name}={value}" for name, value in zip(group_by, row.groups, strict=True))
    return f"{row.attack}/{row.defense}" + (f" ({groups})" if groups else "")


def _runtime_warning(row: Row, group_by: list[str], results: list[Mapping[str, Any]]) -> str:
    mixed = []
    for path, label in RUNTIME_FIELDS:
        seen = []
        for result in results:
            found, value = _lookup(result, path)
            text = _text(value) if found else "unrecorded"
            if text not in seen:
                seen.append(text)
        if len(seen) > 1:
            mixed.append(f"{label} ({', '.join(sorted(seen))})")
    if not mixed:
        return ""
    listed = mixed[0] if len(mixed) == 1 else f"{', '.join(mixed[:-1])} and {mixed[-1]}"
    return (f"row {_row_name(row, group_by)} averages results of different {listed}; "
            f"numbers from different CPU kernels or thread counts are not bit-comparable "
            f"(the row is not split)")  # fmt: skip


def _short(path: str) -> str:
    return SHORT_NAMES.get(path, path)


def _split_warning(split: list[str], differ: set[str]) -> str:
    shown = ", ".join(map(_short, split))
    also = ", ".join(map(_short, sorted(differ - set(split))))
    them = "them" if len(split) > 1 else "it"
    named = f"{shown} (and {also}, which vary with {them})" if also else shown
    return (f"results of the same attack differ in {named}; rows are split by {them} "
            f"(choose the columns with --group-by, or keep one setting with --filter "
            f"FIELD=VALUE)")  # fmt: skip


def _nonfinite_warning(results: list[Mapping[str, Any]]) -> str:
    bad = []
    for result in results:
        keys = [k for k, _ in COLUMNS if not _finite_or_none(_value(result, k))]
        if keys:
            bad.append(f"{_name(result)} ({', '.join(keys)})")
    if not bad:
        return ""
    return ("non-finite metrics (NaN or infinite) are left out of the means and never marked "
            f"best: {_listing(bad)}")  # fmt: skip


def _finite_or_none(value: float | None) -> bool:
    return value is None or math.isfinite(value)


def _order(sort: str):
    """Sort key: group values, attack, then rows with every `sort` value finite, best first;
    then rows with some non-finite; then rows without a value."""
    sign = _direction(sort)

    def key(row: Row):
        spread = row.spreads[sort]
        tier = 2 if spread.mean is None else (1 if spread.nonfinite else 0)
        return (tuple(map(_natural, row.groups)), row.attack, tier,
                -sign * (spread.mean or 0.0), row.defense)  # fmt: skip

    return key


def tabulate(results: list[dict], group_by: list[str] | None = None,
             sort: str = "after_asr") -> Board:  # fmt: skip
    """Rows sorted by group, attack, then `sort` best first; the best defense (not a baseline,
    see `results.is_baseline`, with no non-finite value of `sort`) of each attack and group is
    marked."""
    check_sort(sort)
    chosen_by = list(group_by or [])
    for name in chosen_by:
        _require(results, name)
    chosen = [tuple(_group_text(r, name) for name in chosen_by) for r in results]
    flats = [settings(r) for r in results]
    keys = [(c, experiment_key(f)) for c, f in zip(chosen, flats, strict=True)]
    warnings: list[str] = []

    kept = newest_per_seed(results, keys)
    dropped = [_name(results[i]) for i in sorted(set(range(len(results))) - set(kept))]
    if dropped:
        warnings.append(f"{len(dropped)} result file(s) repeat a seed of the same experiment; "
                        f"each seed counts once (the newest by created), left out: "
                        f"{_listing(dropped)}")  # fmt: skip

    # Settings become group columns where they differ between results the table would average
    # (one attack and defense) or rank against each other (the defenses of one attack, which
    # must share everything but the defense's own fields).
    averaged: dict[tuple, list[dict[str, str]]] = defaultdict(list)
    ranked: dict[tuple, list[dict[str, str]]] = defaultdict(list)
    for i in kept:
        attack, defense = results[i]["attack"]["name"], results[i]["defense"]["name"]
        averaged[(chosen[i], attack, defense)].append(flats[i])
        poisoned = {p: v for p, v in flats[i].items() if not p.startswith("defense.")}
        ranked[(chosen[i], attack)].append(poisoned)
    differ = varying(averaged.values()) | varying(ranked.values())
    split = split_columns(differ, [flats[i] for i in kept])
    columns = [*chosen_by, *map(_short, split)]
    if split:
        warnings.append(_split_warning(split, differ))

    experiments: dict[tuple, list[dict]] = defaultdict(list)
    for i in kept:
        experiments[keys[i]].append(results[i])
    rows: list[tuple[Row, list[dict]]] = []
    for group in experiments.values():
        first = group[0]
        values = tuple(_group_text(first, name) for name in [*chosen_by, *split])
        spreads = {key: _spread([_value(r, key) for r in group])
                 for key, _ in [*COLUMNS, *VISIBILITY_COLUMNS]}  # fmt: skip
        seeds = len({r["seed"] for r in group})
        baseline = any(is_baseline(r["defense"]) for r in group)
        row = Row(first["attack"]["name"], first["defense"]["name"], seeds, spreads, values,
                  baseline=baseline)  # fmt: skip
        rows.append((row, group))
    warning = _nonfinite_warning([results[i] for i in kept])
    if warning:
        warnings.append(warning)

    order = _order(sort)
    rows.sort(key=lambda pair: order(pair[0]))
    best: dict[tuple, int] = {}
    for index, (row, group) in enumerate(rows):  # best first within each (group, attack)
        spread = row.spreads[sort]
        if not row.baseline and spread.mean is not None and not spread.nonfinite:
            best.setdefault((row.groups, row.attack), index)
        warning = _runtime_warning(row, columns, group)
        if warning:
            warnings.append(warning)
    winners = set(best.values())
    marked = [replace(row, best=i in winners) for i, (row, _) in enumerate(rows)]
    return Board(marked, columns, warnings)


def leaderboard(results: list[dict], group_by: list[str] | None = None,
                sort: str = "after_asr") -> list[Row]:  # fmt: skip
    """The rows of `tabulate` (its group columns and warnings dropped)."""
    return tabulate(results, group_by, sort).rows


def shown_columns(visibility: bool = False) -> list[tuple[str, str]]:
    """The (key, header) of each number column: the metrics, then the trigger's visibility."""
    return [*COLUMNS, *VISIBILITY_COLUMNS] if visibility else list(COLUMNS)


def headers(group_by: list[str] | None = None, visibility: bool = False) -> list[str]:
    return [*(group_by or []), "attack", "defense", "seeds",
            *[h for _, h in shown_columns(visibility)]]  # fmt: skip


def row_texts(row: Row, visibility: bool = False) -> list[str]:
    return [*row.groups, row.attack, row.defense, str(row.seeds),
            *[row.spreads[k].text() for k, _ in shown_columns(visibility)]]  # fmt: skip


def render(rows: list[Row], fmt: str, group_by: list[str] | None = None,
           visibility: bool = False) -> str:  # fmt: skip
    """Markdown, CSV (means and stds in their own columns), LaTeX or HTML; the best defense of
    each attack in bold (CSV: a `best` column). `visibility` adds PSNR, SSIM and L-inf."""
    columns = shown_columns(visibility)
    heads = headers(group_by, visibility)
    if fmt == "markdown":
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        for row in rows:
            texts = row_texts(row, visibility)
            if row.best:
                texts = [f"**{t}**" for t in texts]
            lines.append("| " + " | ".join(texts) + " |")
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            [*(group_by or []), "attack", "defense", "seeds", "best"]
            + [f"{key}_{part}" for key, _ in columns for part in ("mean", "std")]
        )
        for row in rows:
            values = []
            for key, _ in columns:
                spread = row.spreads[key]
                values += ["" if spread.mean is None else f"{spread.mean:.6f}",
                           "" if spread.std is None else f"{spread.std:.6f}"]  # fmt: skip
            writer.writerow([*row.groups, row.attack, row.defense, row.seeds, int(row.best),
                             *values])  # fmt: skip
        return buffer.getvalue()
    if fmt == "latex":

        def escape(text: str) -> str:
            return text.replace("_", r"\_").replace("±", r"$\pm$")

        n_left = len(heads) - len(columns) - 1
        lines = [
            r"\begin{tabular}{" + "l" * n_left + "r" * (len(columns) + 1) + "}",
            r"\toprule",
            " & ".join(escape(h) for h in heads) + r" \\",
            r"\midrule",
        ]
        for row in rows:
            texts = [escape(t) for t in row_texts(row, visibility)]
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
            cells = [html.escape(t) for t in row_texts(row, visibility)]
            if row.best:
                cells = [f"<strong>{c}</strong>" for c in cells]
            attrs = ' class="best"' if row.best else ""
            lines.append(f"    <tr{attrs}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        lines += ["  </tbody>", "</table>"]
        return "\n".join(lines) + "\n"
    raise BenchbdError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
