"""The leaderboard: a pure function of a folder of result files, computed with pandas.

The results become one DataFrame (`results_frame`: `pandas.json_normalize`, a row per file and
a column per dotted path such as `metrics.after.asr`; poison indices and the other per-run
fields no table reads are dropped first, so a thousand files flatten quickly). `--filter` is a
boolean mask on it. A table row is a groupby: one experiment (attack, defense and every other
recorded setting, see benchbd.experiments) and any `group_by` fields, each metric the mean and
standard deviation over distinct seeds; the best defense of each attack is marked. Every number
recorded under metrics.before.* / metrics.after.* is a column, `before_<name>` /
`after_<name>`, beside `der` and the trigger's visibility; a table shows the columns it is
given (CA and ASR before and after and DER unless told otherwise) and sorts by one of them.
Rendered with pandas' writers (`to_markdown`, `to_csv`, `Styler.to_latex`, `to_html`) here
and as a rich table by the CLI. Every choice of direction (sorting, the best row) comes from
HIGHER_IS_BETTER, so ASR is better low and CA, RA and DER better high.

What a reader could be misled by comes back as warning lines with the rows (only the CLI
prints): results of one attack that differ in a setting (rows split, the fields shown as
columns), a seed found twice (counted once), non-finite metrics (left out of means,
never best), rows mixing CPU kernel levels or thread counts (not bit-comparable), and a sort
by a metric whose direction nobody declared.

pandas is imported on first use, not with this module.
"""

from __future__ import annotations

import difflib
import html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchbd.errors import BenchbdError
from benchbd.experiments import NOT_SETTINGS, split_columns
from benchbd.results import OMITTED_AT_DEFAULT, higher_is_better, is_baseline, read_result

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

COLUMNS = [  # the metric columns a table shows by default, (key, header)
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
# What --sort accepts with the default columns: a table sorts only by a column it shows.
SORT_CHOICES = tuple(key for key, _ in COLUMNS)
DEFAULT_SORT = "after_asr"
FORMATS = ("rich", "markdown", "csv", "latex", "html")
# metrics.<when>.<name> is the column <when>_<name>; a screening defense records how well it
# found the poisoned pairs under metrics.detection (detection_auroc, detection_tpr_at_1fpr, ...)
WHEN = ("before", "after", "detection")
METRIC_LABELS = {"ca": "CA", "asr": "ASR", "ra": "RA", "ca_top5": "CA top-5", "auroc": "AUROC",
                 "ap": "AP", "tpr_at_1fpr": "TPR@1%FPR", "tpr_at_5fpr": "TPR@5%FPR",
                 "poisons_removed": "poisons removed", "clean_lost": "clean lost"}  # fmt: skip
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
ABSENT = "-"  # a group-by value of a result that does not record the field (or records null)
# What changes from run to run and no table reads (poison indices, an attack's seeded state,
# timings, versions, hashes): left out of the frame. `--filter` and `--group-by` still find
# these fields, in the files themselves. `runtime` is cut down to RUNTIME_FIELDS.
READ_PER_RUN = {"seed", "metrics", "der", "created", "runtime", "extra.trigger_visibility",
                "attack.baseline", "defense.baseline"}  # fmt: skip


def _tree(paths: Iterable[str]) -> dict[str, Any]:
    """Dotted paths as a nested dict whose leaves are None: {"poison": {"indices": None}}."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        *parents, leaf = path.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if node is None:
                break
        else:
            node[leaf] = None
    return tree


UNREAD = _tree(NOT_SETTINGS - READ_PER_RUN)


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


# --- the frame ---------------------------------------------------------------------------


def _pruned(data: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    """`data` without the paths of `tree` (copies only the objects it changes)."""
    out = {}
    for key, value in data.items():
        if key in tree:
            inner = tree[key]
            if inner is None:
                continue
            if isinstance(value, dict):
                value = _pruned(value, inner)
        out[key] = value
    return out


def _inf_for_nan(value: Any) -> Any:
    """A recorded NaN (a diverged run) as infinity, in a metric or an object of them: in the
    frame NaN means "not recorded", as everywhere in pandas, and both count as non-finite.
    (NaN is the one value not equal to itself.)"""
    if isinstance(value, dict):
        return {key: _inf_for_nan(inner) if isinstance(inner, dict) else
                (math.inf if inner != inner else inner)
                for key, inner in value.items()}  # fmt: skip
    return math.inf if value != value else value


def with_omitted_settings(result: Mapping[str, Any]) -> Mapping[str, Any]:
    """`result` with every setting it leaves out at its default (`OMITTED_AT_DEFAULT`, e.g. a
    CLIP-only recipe's pretrain.inmodal_weight) filled in, so a table reads it as that value,
    not as missing (copies only the objects it changes)."""
    for path, default in OMITTED_AT_DEFAULT.items():
        parent, _, leaf = path.rpartition(".")
        node = result.get(parent)
        if isinstance(node, Mapping) and node.get(leaf) is None:
            result = {**result, parent: {**node, leaf: default}}
    return result


def _flat_record(result: Mapping[str, Any]) -> dict[str, Any]:
    """What `results_frame` flattens of one result: no unread per-run field, settings left out
    at their default filled in, non-finite measurements as infinity, `runtime` only for
    RUNTIME_FIELDS."""
    record = _pruned(with_omitted_settings(result), UNREAD)
    for key in ("metrics", "der"):
        if key in record:
            record[key] = _inf_for_nan(record[key])
    extra = record.get("extra")
    if isinstance(extra, dict) and "trigger_visibility" in extra:
        visibility = _inf_for_nan(extra["trigger_visibility"])
        record["extra"] = {**extra, "trigger_visibility": visibility}
    if "runtime" in record:  # {"kernels.level": ...} flattens to the column runtime.kernels.level
        record["runtime"] = {path.removeprefix("runtime."): value for path, _ in RUNTIME_FIELDS
                             for found, value in [_lookup(result, path)] if found}  # fmt: skip
    return record


def results_frame(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The results as a DataFrame, one row per result (in order) and one column per recorded
    dotted path (`pandas.json_normalize`), less the per-run fields no table reads (UNREAD).
    NaN is a field the file does not record (or records as null); a recorded non-finite
    measurement is infinite."""
    import pandas as pd

    return pd.json_normalize([_flat_record(r) for r in results])


def _lookup(result: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """(found, value) of a recorded field by dotted path ('defense.params.inmodal_weight') or
    alias ('dataset'); a setting left out at its default is found, with that value."""
    value: Any = with_omitted_settings(result)
    for part in FIELD_ALIASES.get(name, name).split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _field(frame: pd.DataFrame, results: Sequence[Mapping[str, Any]],
           name: str) -> pd.Series | None:  # fmt: skip
    """A recorded field (alias or dotted path) of every result, NaN or None where a result
    does not record it; None when none does. A path to an object or a list, or to a field the
    frame leaves out, is read from the results themselves."""
    import pandas as pd

    path = FIELD_ALIASES.get(name, name)
    if path in frame.columns:
        return frame[path]
    found = [_lookup(r, path) for r in results]
    if not any(ok for ok, _ in found):
        return None
    return pd.Series([value if ok else None for ok, value in found], index=frame.index,
                     dtype=object)  # fmt: skip


def _no_field(name: str) -> BenchbdError:
    return BenchbdError(f"result files have no field {name!r} (use a dotted path such as "
                        f"dataset.name or defense.params.epochs)")  # fmt: skip


def _required(frame: pd.DataFrame, results: Sequence[Mapping[str, Any]],
              name: str) -> pd.Series:  # fmt: skip
    """A field name is a mistake only if no result records it (older files may lack it)."""
    values = _field(frame, results, name)
    if values is None:
        raise _no_field(name)
    return values


def _text(value: Any) -> str:
    """A recorded value as a table cell: whole numbers in full (a column of integers that some
    file lacks is a float column in the frame), other numbers in their short form."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def group_text(result: Mapping[str, Any], name: str) -> str | None:
    """A recorded field (alias or dotted path) of one result as a table writes it in a group
    column (`Row.groups`); None when the result does not record it. The same as
    `leaderboard([result], group_by=[name])[0].groups[0]`, without building a table."""
    found, value = _lookup(result, name)
    if not found:
        return None
    return ABSENT if value is None else _text(value)


def _texts(values: pd.Series, absent: str = ABSENT) -> list[str]:
    missing = values.isna().tolist()
    return [absent if gone else _text(v) for v, gone in zip(values.tolist(), missing, strict=True)]


# --- filters -----------------------------------------------------------------------------


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


def _equals(values: pd.Series, wanted: str) -> pd.Series:
    """Where a field equals the text `wanted`: numbers as numbers, the rest as their text."""
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    present = values.notna()
    if is_numeric_dtype(values.dtype) and not is_bool_dtype(values.dtype):
        try:
            number = float(wanted)
        except ValueError:
            return present & False
        return present & ((values - number).abs() <= 1e-9 * values.abs().clip(lower=1.0))
    matched = [here and _matches(value, wanted)
               for value, here in zip(values.tolist(), present.tolist(), strict=True)]  # fmt: skip
    return pd.Series(matched, index=values.index, dtype=bool)


def apply_filters(results: list[dict], filters: list[tuple[str, str]]) -> list[dict]:
    """Keep the results whose every filtered field equals its value (numbers compared as
    numbers, so poison_rate=0.03 matches 0.030000); a result without the field is left out."""
    if not filters:
        return list(results)
    import pandas as pd

    frame = results_frame(results)
    fields = [(_required(frame, results, name), wanted) for name, wanted in filters]
    keep = pd.Series(True, index=frame.index)
    for values, wanted in fields:
        keep &= _equals(values, wanted)
    return [results[i] for i in keep[keep].index]


# --- columns -----------------------------------------------------------------------------


def _metric_key(path: str) -> str | None:
    """metrics.after.ra -> after_ra; None for a path that is not a metric."""
    parts = path.split(".")
    if len(parts) >= 3 and parts[0] == "metrics" and parts[1] in WHEN:
        return f"{parts[1]}_{'_'.join(parts[2:])}"
    return None


def column_key(name: str) -> str:
    """A column by key (after_ra) or by the recorded path (metrics.after.ra,
    extra.trigger_visibility.ssim)."""
    name = name.strip()
    if name.startswith("extra.trigger_visibility."):
        return name.removeprefix("extra.trigger_visibility.")
    return _metric_key(name) or name


def parse_columns(items: Iterable[str]) -> list[str] | None:
    """`--columns` values (comma-separated, repeatable) as column keys in order, each once;
    None for none given (the default columns)."""
    keys: list[str] = []
    for item in items:
        for name in item.split(","):
            if name.strip() and column_key(name) not in keys:
                keys.append(column_key(name))
    return keys or None


def column_header(key: str) -> str:
    """What a table calls a column: "RA after" for after_ra, "recall_at_1 after" for a metric
    it has no label for."""
    known = dict([*COLUMNS, *VISIBILITY_COLUMNS])
    if key in known:
        return known[key]
    when, _, metric = key.partition("_")
    if when == "detection" and metric:
        return f"detection {METRIC_LABELS.get(metric, metric)}"
    if when in WHEN and metric:
        return f"{METRIC_LABELS.get(metric, metric)} {when}"
    return key


def _keys(columns: Sequence[str] | None) -> list[str]:
    return [key for key, _ in COLUMNS] if columns is None else [column_key(c) for c in columns]


def default_sort(columns: Sequence[str] | None = None) -> str:
    """The sort key when none is given: ASR after if the table shows it, else its first
    column."""
    keys = _keys(columns)
    return DEFAULT_SORT if DEFAULT_SORT in keys or not keys else keys[0]


def check_sort(sort: str, columns: Sequence[str] | None = None) -> None:
    """A table sorts by one of the columns it shows (`columns`, the default ones if None)."""
    choices = _keys(columns)
    if column_key(sort) not in choices:
        raise BenchbdError(f"cannot sort by {sort!r}; choose from {', '.join(choices)} (a column "
                           f"the table shows: add one with --columns)")  # fmt: skip


def _direction(key: str) -> int | None:
    """+1 when a larger value of this column is better, -1 when smaller is, None when the
    metric declares no direction in HIGHER_IS_BETTER."""
    metric = key.split("_", 1)[1] if key.startswith(tuple(f"{w}_" for w in WHEN)) else key
    higher = higher_is_better(metric)
    return None if higher is None else (1 if higher else -1)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(values: pd.Series) -> pd.Series | None:
    """A column as floats when every value it records is a number (booleans are not)."""
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if is_bool_dtype(values.dtype):
        return None
    if is_numeric_dtype(values.dtype):
        return values.astype(float)
    if all(map(_is_number, values.dropna().tolist())):
        return pd.to_numeric(values, errors="coerce").astype(float)
    return None


def _metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """Every numeric column by key: the metrics recorded before and after (in the order the
    files record them), DER, the trigger's visibility; the default columns always."""
    import numpy as np
    import pandas as pd

    paths = {key: path for path in frame.columns if (key := _metric_key(path))}
    paths = {key: paths[key] for when in WHEN for key in paths if key.startswith(f"{when}_")}
    paths["der"] = "der"
    paths.update({key: f"extra.trigger_visibility.{key}" for key, _ in VISIBILITY_COLUMNS})
    columns = {}
    for key, path in paths.items():
        numbers = _numbers(frame[path]) if path in frame.columns else None
        if numbers is not None:
            columns[key] = numbers
    for key in [*SORT_CHOICES, *VISIBILITY_KEYS]:  # not recorded by any of these files
        columns.setdefault(key, pd.Series(np.nan, index=frame.index))
    return pd.DataFrame(columns, index=frame.index)


def _check_columns(keys: Sequence[str], metrics: pd.DataFrame, frame: pd.DataFrame) -> None:
    for key in keys:
        if key in metrics.columns:
            continue
        recorded = [p for p in frame.columns if _metric_key(p) == key]
        if recorded:
            raise BenchbdError(f"column {key!r} ({recorded[0]}) is not numeric in these result "
                               f"files; columns: {', '.join(metrics.columns)}")  # fmt: skip
        close = difflib.get_close_matches(key, list(metrics.columns), n=1)
        hint = f"; did you mean {close[0]!r}" if close else ""
        raise BenchbdError(f"no column {key!r} in these result files{hint} (columns: "
                           f"{', '.join(metrics.columns)})")  # fmt: skip


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

    texts = {label: _texts(frame[path], "unrecorded")
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

    keys = _keys(columns)
    chosen_by = list(group_by or [])
    frame = results_frame(results)
    metrics = _metrics(frame)
    _check_columns(keys, metrics, frame)
    check_sort(sort, keys)
    sort = column_key(sort)
    chosen = [_required(frame, results, name) for name in chosen_by]
    if frame.empty:
        return Board([], chosen_by, [])
    warnings: list[str] = []
    sign = _direction(sort)
    if sign is None:
        sign = 1
        warnings.append(f"{sort} declares no direction in benchbd.results.HIGHER_IS_BETTER; "
                        f"sorted and marked best as higher-is-better")  # fmt: skip

    # A slot is the values of the chosen group fields and the experiment; one file per seed.
    n = len(frame)
    chosen_texts = [pd.Series(_texts(values), index=frame.index) for values in chosen]
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
    texts = [*chosen_texts, *(pd.Series(_texts(frame[path]), index=frame.index) for path in split)]
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


# --- rendering ---------------------------------------------------------------------------


def shown_columns(visibility: bool = False,
                  columns: Sequence[str] | None = None) -> list[tuple[str, str]]:  # fmt: skip
    """The (key, header) of each number column: the metrics (`columns`, the default ones if
    None), then the trigger's visibility."""
    shown = [(key, column_header(key)) for key in _keys(columns)]
    if visibility:
        shown += [(k, h) for k, h in VISIBILITY_COLUMNS if k not in dict(shown)]
    return shown


def headers(group_by: list[str] | None = None, visibility: bool = False,
            columns: Sequence[str] | None = None) -> list[str]:  # fmt: skip
    return [*(group_by or []), "attack", "defense", "seeds",
            *[h for _, h in shown_columns(visibility, columns)]]  # fmt: skip


def row_texts(row: Row, visibility: bool = False,
              columns: Sequence[str] | None = None) -> list[str]:  # fmt: skip
    absent = SeedSpread(None, None)
    numbers = [row.spreads.get(key, absent).text() for key, _ in shown_columns(visibility, columns)]
    return [*row.groups, row.attack, row.defense, str(row.seeds), *numbers]


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
    absent = SeedSpread(None, None)
    records = []
    for row in rows:
        spreads = [row.spreads.get(key, absent) for key, _ in shown]
        records.append([*row.groups, row.attack, row.defense, row.seeds, int(row.best),
                        *[value for s in spreads for value in (s.mean, s.std)]])  # fmt: skip
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
