"""A table's number columns: which there are, what they are called, and which way is better.

Every number recorded under metrics.before.* / metrics.after.* / metrics.detection.* is a column,
`before_<name>` / `after_<name>` / `detection_<name>`, beside `der` and the trigger's visibility
(`psnr_db`, `ssim`, `linf`); a column is named by that key or by its recorded path
(`metrics.after.ra`). A table shows the columns it is given (`--columns`; CA and ASR before and
after and DER unless told otherwise) and sorts by one of them, and only by one it shows, so that
a reader sees what the rows are ranked by. A row's before is on the classifier its after uses
(reporting.result_frame.like_with_like: a linear-head defense's before is the probe of the poisoned
encoder); the zero-shot before of every row is `before_zeroshot_<name>`. Every choice of
direction (sorting, the best row) comes from `HIGHER_IS_BETTER` (`direction`), so ASR is better
low and CA, RA and DER better high.

pandas is imported on first use, not with this module.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from benchbd.core.errors import BenchbdError
from benchbd.core.results import higher_is_better

if TYPE_CHECKING:
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
# metrics.<when>.<name> is the column <when>_<name>; a screening defense records how well it
# found the poisoned pairs under metrics.detection (detection_auroc, detection_tpr_at_1fpr, ...)
WHEN = ("before", "after", "detection", "before_zeroshot")
METRIC_LABELS = {"ca": "CA", "asr": "ASR", "ra": "RA", "ca_top5": "CA top-5", "auroc": "AUROC",
                 "ap": "AP", "tpr_at_1fpr": "TPR@1%FPR", "tpr_at_5fpr": "TPR@5%FPR",
                 "poisons_removed": "poisons removed", "clean_lost": "clean lost",
                 "seconds_per_image": "s/image"}  # fmt: skip


def _metric_key(path: str) -> str | None:
    """metrics.after.ra -> after_ra; None for a path that is not a metric."""
    parts = path.split(".")
    if len(parts) >= 3 and parts[0] == "metrics" and parts[1] in WHEN:
        return f"{parts[1]}_{'_'.join(parts[2:])}"
    return None


def split_key(key: str) -> tuple[str, str]:
    """(when, metric) of a metric column's key, the longest `WHEN` first
    (before_zeroshot_asr -> ("before_zeroshot", "asr")); ("", key) for another column."""
    for when in sorted(WHEN, key=len, reverse=True):
        if key.startswith(f"{when}_") and len(key) > len(when) + 1:
            return when, key[len(when) + 1 :]
    return "", key


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
    when, metric = split_key(key)
    if when == "detection":
        return f"detection {METRIC_LABELS.get(metric, metric)}"
    if when == "before_zeroshot":
        return f"{METRIC_LABELS.get(metric, metric)} before (zero-shot)"
    if when:
        return f"{METRIC_LABELS.get(metric, metric)} {when}"
    return key


def column_keys(columns: Sequence[str] | None) -> list[str]:
    """The keys of the metric columns a table shows: `columns` (keys or recorded paths), the
    default ones if None."""
    return [key for key, _ in COLUMNS] if columns is None else [column_key(c) for c in columns]


def shown_columns(visibility: bool = False,
                  columns: Sequence[str] | None = None) -> list[tuple[str, str]]:  # fmt: skip
    """The (key, header) of each number column: the metrics (`columns`, the default ones if
    None), then the trigger's visibility."""
    shown = [(key, column_header(key)) for key in column_keys(columns)]
    if visibility:
        shown += [(k, h) for k, h in VISIBILITY_COLUMNS if k not in dict(shown)]
    return shown


def default_sort(columns: Sequence[str] | None = None) -> str:
    """The sort key when none is given: ASR after if the table shows it, else its first
    column."""
    keys = column_keys(columns)
    return DEFAULT_SORT if DEFAULT_SORT in keys or not keys else keys[0]


def check_sort(sort: str, columns: Sequence[str] | None = None) -> None:
    """A table sorts by one of the columns it shows (`columns`, the default ones if None)."""
    choices = column_keys(columns)
    if column_key(sort) not in choices:
        raise BenchbdError(f"cannot sort by {sort!r}; choose from {', '.join(choices)} (a column "
                           f"the table shows: add one with --columns)")  # fmt: skip


def direction(key: str) -> int | None:
    """+1 when a larger value of this column is better, -1 when smaller is, None when the
    metric declares no direction in HIGHER_IS_BETTER."""
    higher = higher_is_better(split_key(key)[1])
    return None if higher is None else (1 if higher else -1)


# --- the columns of a frame --------------------------------------------------------------


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


def metric_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Every numeric column of a `results_frame` by key: the metrics recorded before and after
    (in the order the files record them), DER, the trigger's visibility; the default columns
    always."""
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


def check_columns(keys: Sequence[str], metrics: pd.DataFrame, frame: pd.DataFrame) -> None:
    """Every key asked for is a column of `metrics` (the `metric_columns` of `frame`); an
    error names a column recorded but not numeric, or the closest one that is."""
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
