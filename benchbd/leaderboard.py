"""The leaderboard: a pure function of a folder of result files, computed with pandas.

A table row is a groupby of the results' frame (benchbd.result_frame): one experiment (attack,
defense and every other recorded setting, see benchbd.experiments) and any `group_by` fields,
each metric (benchbd.table_columns) the mean and standard deviation over distinct seeds
(`SeedSpread`). Rows are ranked by the column a table sorts by, in its direction, and the best
defense of each attack is marked. The rows are written as text by benchbd.table_writers and as
a rich table by the CLI.

What a reader could be misled by comes back as warning lines with the rows (only the CLI
prints): results of one attack that differ in a setting (rows split, the fields shown as
columns), a seed found twice (counted once), non-finite metrics (left out of means,
never best), rows mixing CPU kernel levels or thread counts (not bit-comparable), and a sort
by a metric whose direction nobody declared.

The names scripts import from here (`load_folder`, `render`, `apply_filters`, ...) are
re-exported from the modules that hold them, so `from benchbd.leaderboard import ...` keeps
working. pandas is imported on first use, not with this module.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchbd.experiments import NOT_SETTINGS, split_columns
from benchbd.result_frame import (
    RUNTIME_FIELDS,
    SHORT_NAMES,
    apply_filters,
    field_values,
    group_text,
    load_folder,
    parse_filters,
    results_frame,
    value_texts,
    with_omitted_settings,
)
from benchbd.results import is_baseline
from benchbd.table_columns import (
    COLUMNS,
    DEFAULT_SORT,
    SORT_CHOICES,
    check_columns,
    check_sort,
    column_header,
    column_key,
    column_keys,
    default_sort,
    direction,
    metric_columns,
    parse_columns,
)
from benchbd.table_writers import FORMATS, headers, render, row_texts, text_table

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [  # what this module holds, then what it re-exports for existing imports
    "Board", "Row", "SeedSpread", "leaderboard", "tabulate",
    "COLUMNS", "DEFAULT_SORT", "FORMATS", "SORT_CHOICES", "apply_filters", "check_sort",
    "column_header", "default_sort", "group_text", "headers", "load_folder", "parse_columns",
    "parse_filters", "render", "results_frame", "row_texts", "text_table",
    "with_omitted_settings",
]  # fmt: skip


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
    spreads: dict[str, SeedSpread]  # by column key: every metric recorded, shown or not
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


# --- the table ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON numbers compare as numbers: 5 and 5.0 are the same setting (booleans stay)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _is_setting(path: str) -> bool:
    parts = path.split(".")
    return not any(".".join(parts[:i]) in NOT_SETTINGS for i in range(1, len(parts) + 1))


# Kinds of column (pandas.api.types.infer_dtype) whose values compare as settings do: numbers
# as numbers (5 == 5.0), text, booleans. Anything else (lists, mixed types) compares as JSON.
PLAIN_KINDS = ("string", "boolean", "empty", "floating", "integer", "mixed-integer-float")


def _settings(frame: pd.DataFrame) -> pd.DataFrame:
    """The recorded settings (benchbd.experiments: every path but NOT_SETTINGS), one column
    each, as integer codes (`pandas.factorize`) that are equal exactly when the settings are:
    numbers compare as numbers, lists and mixed values as canonical JSON, and a result that does
    not record a field has a code of its own there."""
    import pandas as pd
    from pandas.api.types import infer_dtype

    columns = {}
    for path in filter(_is_setting, frame.columns):
        values = frame[path]
        if infer_dtype(values, skipna=True) not in PLAIN_KINDS:
            values = values.map(lambda v: json.dumps(_plain(v), sort_keys=True),
                                na_action="ignore")  # fmt: skip
        columns[path] = pd.factorize(values, use_na_sentinel=False)[0]
    return pd.DataFrame(columns, index=frame.index, dtype="int64")


def _codes(values: Iterable[pd.Series | Sequence[Any]]) -> np.ndarray:
    """Columns of values as one matrix of integer codes, a column each."""
    import numpy as np
    import pandas as pd

    columns = [pd.factorize(np.asarray(v, dtype=object), use_na_sentinel=False)[0] for v in values]
    return np.stack(columns, axis=1) if columns else np.zeros((0, 0), dtype="int64")


def _ids(codes: np.ndarray, n: int) -> np.ndarray:
    """One number per distinct row of `codes` (n rows), numbered in order of first
    appearance."""
    import numpy as np

    if codes.size == 0:
        return np.zeros(n, dtype="int64")
    _, first, inverse = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype="int64")
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def _varying(settings: pd.DataFrame, bundle: np.ndarray) -> set[str]:
    """The settings whose value (a missing one counts) differs between two results of one
    bundle (the same number in `bundle`), in any bundle: those with more distinct (bundle,
    value) pairs than there are bundles."""
    import numpy as np

    if settings.empty:
        return set()
    codes = settings.to_numpy()
    paired = bundle[:, None] * (int(codes.max()) + 1) + codes
    bundles = len(np.unique(bundle))
    return {path for j, path in enumerate(settings.columns)
            if len(np.unique(paired[:, j])) > bundles}  # fmt: skip


def _newest_per_seed(frame: pd.DataFrame, slot: np.ndarray) -> list[int]:
    """The results to keep: one per (slot, seed), the newest by `created` (files without a
    readable date count as the oldest; the last one read on a tie). A seed run twice is still
    one seed."""
    import pandas as pd

    created = frame["created"] if "created" in frame.columns else pd.Series(None, frame.index)
    when = pd.to_datetime(created, utc=True, errors="coerce", format="ISO8601")
    keys = pd.DataFrame({"slot": slot, "seed": frame["seed"], "when": when}, index=frame.index)
    newest = keys.sort_values("when", kind="stable", na_position="first")
    return sorted(newest.drop_duplicates(subset=["slot", "seed"], keep="last").index)


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


def _nonfinite_warning(values: pd.DataFrame, results: Sequence[Mapping[str, Any]]) -> str:
    import numpy as np

    bad = np.isinf(values)
    named = [f"{_name(results[i])} ({', '.join(bad.columns[flags])})"
             for i, flags in zip(bad.index, bad.to_numpy(), strict=True)
             if flags.any()]  # fmt: skip
    if not named:
        return ""
    return ("non-finite metrics (NaN or infinite) are left out of the means and never marked "
            f"best: {_listing(named)}")  # fmt: skip


def _runtime_warnings(frame: pd.DataFrame, row_of: pd.Series,
                      names: dict[int, str]) -> list[str]:  # fmt: skip
    """One warning per row (`names`, in table order) that averages results of different
    runtimes."""
    import pandas as pd

    texts = {label: value_texts(frame[path], "unrecorded")
             for path, label in RUNTIME_FIELDS if path in frame.columns}  # fmt: skip
    texts = pd.DataFrame({label: t for label, t in texts.items() if len(set(t)) > 1},
                         index=row_of.index)  # fmt: skip
    if texts.columns.empty:  # one runtime for the whole table
        return []
    mixed = texts.groupby(row_of).nunique() > 1
    warnings = []
    for row, name in names.items():
        if not mixed.loc[row].any():
            continue
        seen = texts[row_of == row]
        listed = [f"{label} ({', '.join(sorted(seen[label].unique()))})"
                  for label in texts.columns if mixed.loc[row, label]]  # fmt: skip
        both = listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} and {listed[-1]}"
        warnings.append(f"row {name} averages results of different {both}; numbers from "
                        f"different CPU kernels or thread counts are not bit-comparable (the "
                        f"row is not split)")  # fmt: skip
    return warnings


def _over_seeds(values: pd.DataFrame, row_of: pd.Series) -> dict[str, pd.DataFrame]:
    """Each metric over each row's results: mean, standard deviation and count of the finite
    values, and how many were not finite."""
    import numpy as np

    finite = values.where(np.isfinite(values)).groupby(row_of)
    return {"mean": finite.mean(), "std": finite.std(ddof=1), "count": finite.count(),
            "nonfinite": np.isinf(values).groupby(row_of).sum()}  # fmt: skip


def _spreads(stats: dict[str, pd.DataFrame]) -> dict[int, dict[str, SeedSpread]]:
    """Each row's SeedSpread of each metric, from `_over_seeds`."""
    keys = list(stats["mean"].columns)
    spreads = {}
    for row, mean, std, n, bad in zip(stats["mean"].index, *(stats[part].to_numpy().tolist()
                                      for part in ("mean", "std", "count", "nonfinite")),
                                      strict=True):  # fmt: skip
        spreads[row] = {key: SeedSpread(None, None, b) if not c else  # one seed: no spread
                        SeedSpread(m, s if c > 1 else 0.0, b)
                        for key, m, s, c, b in zip(keys, mean, std, n, bad,
                                                   strict=True)}  # fmt: skip
    return spreads


def _ranked(rows: pd.DataFrame, groups: list[str], mean: pd.Series, nonfinite: pd.Series,
            sign: int) -> pd.DataFrame:  # fmt: skip
    """The rows in table order, with `best` marked: by group values (numbers as numbers),
    attack, then rows whose every `sort` value is finite, best first; then rows with some
    non-finite; then rows without a value. The best of each group and attack is the first row
    there that is no baseline and has only finite values."""
    import numpy as np

    tier = np.where(mean.isna(), 2, np.where(nonfinite > 0, 1, 0))
    ordered = rows.assign(tier=tier, score=-sign * mean.fillna(0.0))
    by = []
    for group in groups:
        kind, number, text = zip(*map(_natural, ordered[group]), strict=True)
        ordered = ordered.assign(**{f"{group}.kind": kind, f"{group}.number": number,
                                    f"{group}.text": text})  # fmt: skip
        by += [f"{group}.kind", f"{group}.number", f"{group}.text"]
    ordered = ordered.sort_values([*by, "attack", "tier", "score", "defense"], kind="stable")
    eligible = ordered[~ordered["baseline"] & (ordered["tier"] == 0)]
    winners = eligible.drop_duplicates(subset=[*groups, "attack"]).index
    return ordered.assign(best=ordered.index.isin(winners))


def tabulate(results: list[dict], group_by: list[str] | None = None,
             sort: str = DEFAULT_SORT, columns: Sequence[str] | None = None) -> Board:  # fmt: skip
    """Rows sorted by group, attack, then `sort` best first; the best defense (not a baseline,
    see `results.is_baseline`, with no non-finite value of `sort`) of each attack and group is
    marked. `columns` are the metric columns the table will show (keys such as after_ra or
    paths such as metrics.after.ra; the default ones if None): `sort` must be one of them, and
    the non-finite warning names them. Every row carries every recorded metric all the same."""
    import numpy as np
    import pandas as pd

    keys = column_keys(columns)
    chosen_by = list(group_by or [])
    frame = results_frame(results)
    metrics = metric_columns(frame)
    check_columns(keys, metrics, frame)
    check_sort(sort, keys)
    sort = column_key(sort)
    chosen = [field_values(frame, results, name) for name in chosen_by]
    if frame.empty:
        return Board([], chosen_by, [])
    warnings: list[str] = []
    sign = direction(sort)
    if sign is None:
        sign = 1
        warnings.append(f"{sort} declares no direction in benchbd.results.HIGHER_IS_BETTER; "
                        f"sorted and marked best as higher-is-better")  # fmt: skip

    # A slot is the values of the chosen group fields and the experiment; one file per seed.
    n = len(frame)
    chosen_texts = [pd.Series(value_texts(values), index=frame.index) for values in chosen]
    settings = _settings(frame)
    experiment = _ids(settings.to_numpy(), n)
    slot = _ids(np.column_stack([_codes(chosen_texts).reshape(n, -1), experiment]), n)
    kept = _newest_per_seed(frame, slot)
    dropped = [_name(results[i]) for i in sorted(set(frame.index) - set(kept))]
    if dropped:
        warnings.append(f"{len(dropped)} result file(s) repeat a seed of the same experiment; "
                        f"each seed counts once (the newest by created), left out: "
                        f"{_listing(dropped)}")  # fmt: skip
        frame, settings, metrics = frame.loc[kept], settings.loc[kept], metrics.loc[kept]
        chosen_texts = [texts.loc[kept] for texts in chosen_texts]
        slot = slot[kept]

    # Settings become group columns where they differ between results the table would average
    # (one attack and defense) or rank against each other (the defenses of one attack, which
    # must share everything but the defense's own fields).
    attack, defense = frame["attack.name"], frame["defense.name"]
    n = len(frame)
    averaged = _ids(_codes([*chosen_texts, attack, defense]), n)
    ranked = _ids(_codes([*chosen_texts, attack]), n)
    poisoned = settings[[p for p in settings.columns if not p.startswith("defense.")]]
    differ = _varying(settings, averaged) | _varying(poisoned, ranked)
    split = split_columns(differ, settings[sorted(differ)].to_dict("records"))
    names = [*chosen_by, *map(_short, split)]
    if split:
        warnings.append(_split_warning(split, differ))

    # One row per slot: names, group values and seeds from its results, metrics over them.
    row_of = pd.Series(_ids(slot[:, None], n), index=frame.index)
    groups = [f"group.{i}" for i in range(len(names))]
    split_texts = (pd.Series(value_texts(frame[path]), index=frame.index) for path in split)
    texts = [*chosen_texts, *split_texts]
    baseline = pd.Series([is_baseline(results[i]["defense"]) for i in frame.index],
                         index=frame.index)  # fmt: skip
    per_result = pd.DataFrame({"attack": attack, "defense": defense, "seed": frame["seed"],
                               "baseline": baseline,
                               **dict(zip(groups, texts, strict=True))})  # fmt: skip
    grouped = per_result.groupby(row_of)
    rows = grouped.first().assign(seeds=grouped["seed"].nunique(),
                                  baseline=grouped["baseline"].any())  # fmt: skip
    stats = _over_seeds(metrics, row_of)
    warning = _nonfinite_warning(metrics[keys], results)
    if warning:
        warnings.append(warning)

    ordered = _ranked(rows, groups, stats["mean"][sort].where(stats["count"][sort] > 0),
                      stats["nonfinite"][sort], sign)  # fmt: skip
    spreads = _spreads(stats)
    lines = zip(ordered.index, ordered.to_dict("records"), strict=True)
    made = {row: Row(line["attack"], line["defense"], int(line["seeds"]), spreads[row],
                     tuple(line[g] for g in groups), best=bool(line["best"]),
                     baseline=bool(line["baseline"]))
            for row, line in lines}  # fmt: skip
    warnings += _runtime_warnings(frame, row_of, {row: _row_name(made[row], names)
                                                  for row in made})  # fmt: skip
    return Board(list(made.values()), names, warnings)


def leaderboard(results: list[dict], group_by: list[str] | None = None, sort: str = DEFAULT_SORT,
                columns: Sequence[str] | None = None) -> list[Row]:  # fmt: skip
    """The rows of `tabulate` (its group columns and warnings dropped)."""
    return tabulate(results, group_by, sort, columns).rows
