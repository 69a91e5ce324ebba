"""Result files as one pandas DataFrame: what every table, filter and group reads.

A folder is read once (`load_folder`: a stray file is a warning that names it, a folder with no
result an error that says why), and the results become one frame (`results_frame`:
`pandas.json_normalize`, a row per file and a column per dotted path such as
`metrics.after.asr`). Poison indices and the other per-run fields no table reads are dropped
first, so a thousand files flatten quickly; a setting a file leaves out at its default reads as
that value, not as missing. A field is named by its dotted path or a short alias (`dataset`,
`poison_rate`); one the frame leaves out is still found in the files themselves, so `--filter`
(a boolean mask on the frame, numbers compared as numbers) and `--group-by` reach every field.

pandas is imported on first use, not with this module.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchbd.core.errors import BenchbdError
from benchbd.core.results import read_result
from benchbd.reporting.experiments import NOT_SETTINGS, with_omitted_settings

if TYPE_CHECKING:
    import pandas as pd

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
LINEAR_PROBE = "linear-probe"  # extra.der_basis of a linear-head defense: its before is a probe
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


def like_with_like(metrics: Mapping[str, Any], basis: Any) -> Mapping[str, Any]:
    """A result's metrics with `before` on the classifier `after` uses. A linear-head defense
    (`extra.der_basis` "linear-probe") is measured after with a trained head, so its before is
    the linear probe of the poisoned encoder (`metrics.before_probe`), as its DER is; the
    zero-shot before it also records stays readable as `before_zeroshot`. Every other result's
    before is already zero-shot, and `before_zeroshot` is that same before, so the column is
    whole."""
    if not isinstance(metrics, Mapping) or "before" not in metrics:
        return metrics
    zero_shot = metrics["before"]
    if basis == LINEAR_PROBE and isinstance(metrics.get("before_probe"), Mapping):
        metrics = {**metrics, "before": metrics["before_probe"]}
    return {**metrics, "before_zeroshot": zero_shot}


def _flat_record(result: Mapping[str, Any]) -> dict[str, Any]:
    """What `results_frame` flattens of one result: no unread per-run field, settings left out
    at their default filled in, before on the classifier after uses (`like_with_like`),
    non-finite measurements as infinity, `runtime` only for RUNTIME_FIELDS."""
    record = _pruned(with_omitted_settings(result), UNREAD)
    basis = (result.get("extra") or {}).get("der_basis")
    if "metrics" in record:
        record["metrics"] = like_with_like(record["metrics"], basis)
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


# --- fields ------------------------------------------------------------------------------


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


def field_values(frame: pd.DataFrame, results: Sequence[Mapping[str, Any]],
                 name: str) -> pd.Series:  # fmt: skip
    """A recorded field (alias or dotted path) of every result in `frame` (the
    `results_frame` of `results`), NaN or None where a result does not record it. A field name
    is a mistake only if no result records it (older files may lack it)."""
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


def value_texts(values: pd.Series, absent: str = ABSENT) -> list[str]:
    """A field's values as table cells, as `group_text` writes each; `absent` where a result
    does not record it."""
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
    fields = [(field_values(frame, results, name), wanted) for name, wanted in filters]
    keep = pd.Series(True, index=frame.index)
    for values, wanted in fields:
        keep &= _equals(values, wanted)
    return [results[i] for i in keep[keep].index]
