"""Which result files are seeds of the same experiment.

A leaderboard row is a mean over seeds, which only means something if the seeds ran the same
experiment. A result file records everything about how it was made; the experiment is all of
that except what changes from seed to seed or from run to run (NOT_SETTINGS): the seed itself,
the outcomes, hashes that include the seed, the rows the seeded attack drew, timings, dates,
versions (of libraries and of plugin packages) and the machine's runtime. A new setting
recorded in result files is therefore part of the experiment without anyone listing it here,
and results that differ in it are never averaged together. A setting a file leaves out at its
default (`core.results.OMITTED_AT_DEFAULT`) is that value, not missing (`with_omitted_settings`).

This module is the one definition every table, curve, plot, site and claim uses: a result's
settings (`settings`: dotted path -> canonical JSON text, numbers compared as numbers), their
identity (`experiment_key`), the same as integer codes a pandas frame groups by
(`setting_codes`: equal exactly when the settings are), and the one file kept per seed
(`newest_per_seed`). pandas is imported on first use, not with this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from benchbd.core.results import OMITTED_AT_DEFAULT

if TYPE_CHECKING:
    import pandas as pd

# Dotted paths (and everything under them) that are not settings of the experiment.
NOT_SETTINGS = frozenset(
    {
        "seed",
        "metrics",  # outcomes
        "der",
        "fingerprint",  # hashes of the whole run or poisoned model: they include the seed
        "poisoned_model_fingerprint",
        "poison.indices",  # the rows the seeded attack drew
        "extra.attack_state",  # e.g. WaNet's seeded warp field
        "extra.trigger_visibility",  # measured per run: a random trigger draws by seed
        "extra.defense_report",  # what the defense found or used at run time
        "extra.der_basis",  # follows from the defense (its declared classifier), not a setting
        "extra.stage",  # the model a screen or pretraining defense trained: hashes, threads
        "extra.screen",  # the rows a screen dropped and its ROC curve: outcomes
        "extra.input_detection",  # an input detector's threshold and ROC curve: outcomes
        "pretrain_cached",  # whether this run trained the poisoned model or reused it
        "runtime",  # device, threads, CPU kernels: warned about, never split (see leaderboard)
        "timings",
        "created",
        "versions",
        "attack.version",  # a plugin package's release, like `versions`: recorded, not a setting
        "defense.version",
        "attack.baseline",  # declared by the plugin, read from files written before it or after
        "defense.baseline",
        "schema_version",
    }
)
# Fields listed first when several that vary always vary together (a poison rate and its
# count, a target's name and index): the one a reader knows is the one shown.
PREFERRED = ("dataset.name", "model", "target.name", "poison.rate")


def _normal(value: Any) -> Any:
    """JSON numbers compare as numbers: 5 and 5.0 are the same setting (booleans stay)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _normal(v) for k, v in value.items()}
    return str(value)


def canonical(value: Any) -> str:
    """A setting's value as the text two settings compare by: JSON, keys sorted, numbers as
    floats (5 and 5.0 are one setting)."""
    return json.dumps(_normal(value), sort_keys=True)


def with_omitted_settings(result: Mapping[str, Any]) -> Mapping[str, Any]:
    """`result` with every setting it leaves out at its default (`OMITTED_AT_DEFAULT`, e.g. a
    CLIP-only recipe's pretrain.inmodal_weight) filled in, so it reads as that value, not as
    missing (copies only the objects it changes)."""
    for path, default in OMITTED_AT_DEFAULT.items():
        parent, _, leaf = path.rpartition(".")
        node = result.get(parent)
        if isinstance(node, Mapping) and node.get(leaf) is None:
            result = {**result, parent: {**node, leaf: default}}
    return result


def settings(result: Mapping[str, Any]) -> dict[str, str]:
    """Every recorded setting of a result (those it leaves out at their default filled in):
    dotted path -> `canonical` text of its value. Nested objects are walked down to their
    leaves; a list is one value."""
    flat: dict[str, str] = {}

    def walk(value: Any, path: str) -> None:
        if path in NOT_SETTINGS:
            return
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(inner, f"{path}.{key}" if path else str(key))
        elif path:
            flat[path] = canonical(value)

    walk(with_omitted_settings(result), "")
    return flat


def experiment_key(flat: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """A hashable identity of an experiment, from `settings(result)`."""
    return tuple(sorted(flat.items()))


def setting_codes(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """`settings` of every result as a frame (a row per result, in order; a column per setting
    path) of integer codes (`pandas.factorize` of the canonical texts): two results have equal
    codes in a column exactly when they record the same value there, or both leave it out, so
    equal rows are equal `experiment_key`s."""
    import pandas as pd

    texts = pd.DataFrame.from_records([settings(r) for r in results], index=range(len(results)))
    codes = {path: pd.factorize(texts[path], use_na_sentinel=False)[0] for path in texts.columns}
    return pd.DataFrame(codes, index=texts.index, dtype="int64")


def varying(bundles: Iterable[Sequence[Mapping[str, str]]]) -> set[str]:
    """The setting paths whose value (an absent field counts as one) differs between two
    results of the same bundle, in any bundle."""
    found: set[str] = set()
    for flats in bundles:
        if len(flats) < 2:
            continue
        for path in set().union(*flats) - found:
            if len({flat.get(path) for flat in flats}) > 1:
                found.add(path)
    return found


def _rank(path: str) -> tuple[int, int, str]:
    if path in PREFERRED:
        return (0, PREFERRED.index(path), path)
    return (2 if "fingerprint" in path else 1, 0, path)


def _one_to_one(flats: Sequence[Mapping[str, str]], a: str, b: str) -> bool:
    pairs = {(flat.get(a), flat.get(b)) for flat in flats}
    return len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})


def split_columns(paths: Iterable[str], flats: Sequence[Mapping[str, str]]) -> list[str]:
    """The varying paths worth a column: a path whose values pair one to one with those of a
    path already shown (a poison count beside its rate, a dataset fingerprint beside its
    sizes) adds nothing. Hashes come last, so one is shown only when nothing else differs."""
    shown: list[str] = []
    for path in sorted(paths, key=_rank):
        if not any(_one_to_one(flats, path, other) for other in shown):
            shown.append(path)
    return shown


def _when(result: Mapping[str, Any]) -> tuple[int, float, str]:
    """Sort key for `created`: files without a readable date count as the oldest."""
    created = result.get("created")
    if isinstance(created, str):
        try:
            moment = datetime.fromisoformat(created)
        except ValueError:
            return (0, 0.0, created)
        if moment.tzinfo is None:  # benchbd writes UTC; read a date without a zone as UTC
            moment = moment.replace(tzinfo=timezone.utc)
        return (1, moment.timestamp(), created)
    return (0, 0.0, "")


def newest_per_seed(results: Sequence[Mapping[str, Any]], keys: Sequence[Any]) -> list[int]:
    """Indices of the results to keep: one per (experiment key, seed), the newest by `created`
    (the last one read on a tie). A seed run twice is still one seed."""
    chosen: dict[tuple[Any, Any], int] = {}
    for i, (result, key) in enumerate(zip(results, keys, strict=True)):
        slot = (key, result.get("seed"))
        if slot not in chosen or _when(result) >= _when(results[chosen[slot]]):
            chosen[slot] = i
    return sorted(chosen.values())
