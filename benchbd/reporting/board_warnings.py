"""What a leaderboard tells its reader beside the rows: the warnings of `tabulate`.

Results of one attack that differ in a setting (rows split, the fields shown as columns),
non-finite metrics (left out of means, never best), and rows mixing CPU kernel levels or
thread counts (not bit-comparable) each come back as one line that names the files or rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from benchbd.reporting.result_frame import RUNTIME_FIELDS, SHORT_NAMES, value_texts

if TYPE_CHECKING:
    import pandas as pd


def _short(path: str) -> str:
    return SHORT_NAMES.get(path, path)


def file_name(result: Mapping[str, Any]) -> str:
    path = getattr(result, "path", None)
    if path is not None:
        return str(path)
    return f"{result['attack']['name']}/{result['defense']['name']} seed {result['seed']}"


def listing(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def split_warning(split: list[str], differ: set[str]) -> str:
    shown = ", ".join(map(_short, split))
    also = ", ".join(map(_short, sorted(differ - set(split))))
    them = "them" if len(split) > 1 else "it"
    named = f"{shown} (and {also}, which vary with {them})" if also else shown
    return (f"results of the same attack differ in {named}; rows are split by {them} "
            f"(choose the columns with --group-by, or keep one setting with --filter "
            f"FIELD=VALUE)")  # fmt: skip


def nonfinite_warning(values: pd.DataFrame, results: Sequence[Mapping[str, Any]]) -> str:
    import numpy as np

    bad = np.isinf(values)
    named = [f"{file_name(results[i])} ({', '.join(bad.columns[flags])})"
             for i, flags in zip(bad.index, bad.to_numpy(), strict=True)
             if flags.any()]  # fmt: skip
    if not named:
        return ""
    return ("non-finite metrics (NaN or infinite) are left out of the means and never marked "
            f"best: {listing(named)}")  # fmt: skip


def runtime_warnings(frame: pd.DataFrame, row_of: pd.Series,
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
