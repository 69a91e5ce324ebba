"""The leaderboard: a pure function of a folder of result files, computed with pandas.

A table row is a groupby of the results' frame (reporting.result_frame): one experiment (attack,
defense and every other recorded setting, see reporting.experiments) and any `group_by` fields,
each metric (benchbd.reporting.table_columns) the mean over distinct seeds with its 95 % interval
(`reporting.spreads.SeedSpread`). Rows are ranked by one rule (reporting.ranking): within an
attack and setting, by the column a table sorts by, in its direction, among the rows whose
model is usable (CA drop within the tolerance, every seed trained); the best is marked. The
rows are written as text by benchbd.reporting.leaderboard_tables and as a rich table by the CLI.

What a reader could be misled by comes back as warning lines with the rows (only the CLI
prints): results of one attack that differ in a setting (rows split, the fields shown as
columns), a seed found twice (counted once), non-finite metrics (left out of means,
never best), rows mixing CPU kernel levels or thread counts (not bit-comparable), and a sort
by a metric whose direction nobody declared.

The rows are data (reporting.board) and become text in reporting.leaderboard_tables. The names
scripts import from here (`load_folder`, `apply_filters`, ...) are re-exported from the modules
that hold them. pandas is imported on first use, not with this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from benchbd.core.results import is_baseline
from benchbd.reporting.board import Board, Row
from benchbd.reporting.board_warnings import (
    file_name,
    listing,
    nonfinite_warning,
    runtime_warnings,
    split_warning,
)
from benchbd.reporting.experiments import newest_per_seed, setting_codes, split_columns
from benchbd.reporting.ranking import (
    DEFAULT_CA_TOLERANCE,
    check_tolerance,
    eligibility,
    rank_text,
    ranked,
    splits_rankings,
    untrained,
)
from benchbd.reporting.result_frame import (
    FIELD_ALIASES,
    LINEAR_PROBE,
    SHORT_NAMES,
    apply_filters,
    field_values,
    group_text,
    load_folder,
    parse_filters,
    results_frame,
    value_texts,
)
from benchbd.reporting.spreads import SeedSpread, over_seeds, spreads
from benchbd.reporting.table_columns import (
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

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [  # what this module holds, then what it re-exports for existing imports
    "leaderboard", "tabulate",
    "Board", "COLUMNS", "DEFAULT_SORT", "Row", "SORT_CHOICES", "SeedSpread", "apply_filters",
    "check_sort", "column_header", "default_sort", "group_text", "load_folder",
    "parse_columns", "parse_filters", "results_frame",
]  # fmt: skip


# --- the table ---------------------------------------------------------------------------


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


def _row_name(row: Row, group_by: list[str]) -> str:
    groups = ", ".join(f"{name}={value}" for name, value in zip(group_by, row.groups, strict=True))
    return f"{row.attack}/{row.defense}" + (f" ({groups})" if groups else "")


def _short(path: str) -> str:
    return SHORT_NAMES.get(path, path)


def tabulate(results: list[dict], group_by: list[str] | None = None,
             sort: str = DEFAULT_SORT, columns: Sequence[str] | None = None,
             ca_tolerance: float = DEFAULT_CA_TOLERANCE) -> Board:  # fmt: skip
    """Rows sorted by group, attack, then `sort` best first; the best defense (not a baseline,
    see `results.is_baseline`, with no non-finite value of `sort`) of each attack and group is
    marked. `columns` are the metric columns the table will show (keys such as after_ra or
    paths such as metrics.after.ra; the default ones if None): `sort` must be one of them, and
    the non-finite warning names them. Every row carries every recorded metric all the same."""
    import numpy as np
    import pandas as pd

    tolerance = check_tolerance(ca_tolerance)
    keys = column_keys(columns)
    chosen_by = list(group_by or [])
    frame = results_frame(results)
    metrics = metric_columns(frame)
    check_columns(keys, metrics, frame)
    check_sort(sort, keys)
    sort = column_key(sort)
    chosen = [field_values(frame, results, name) for name in chosen_by]
    if frame.empty:
        return Board([], chosen_by, [], column_key(sort), tolerance)
    warnings: list[str] = []
    sign = direction(sort)
    if sign is None:
        sign = 1
        warnings.append(f"{sort} declares no direction in benchbd.core.results.HIGHER_IS_BETTER; "
                        f"sorted and marked best as higher-is-better")  # fmt: skip

    # A slot is the values of the chosen group fields and the experiment; one file per seed.
    n = len(frame)
    chosen_texts = [pd.Series(value_texts(values), index=frame.index) for values in chosen]
    settings = setting_codes(results)  # reporting.experiments: what makes an experiment
    experiment = _ids(settings.to_numpy(), n)
    slot = _ids(np.column_stack([_codes(chosen_texts).reshape(n, -1), experiment]), n)
    kept = newest_per_seed(results, slot.tolist())
    dropped = [file_name(results[i]) for i in sorted(set(frame.index) - set(kept))]
    if dropped:
        warnings.append(f"{len(dropped)} result file(s) repeat a seed of the same experiment; "
                        f"each seed counts once (the newest by created), left out: "
                        f"{listing(dropped)}")  # fmt: skip
        frame, settings, metrics = frame.loc[kept], settings.loc[kept], metrics.loc[kept]
        chosen_texts = [texts.loc[kept] for texts in chosen_texts]
        slot = slot[kept]

    # Settings become group columns where they differ between results the table would average
    # (one attack and defense) or rank against each other (the defenses of one attack, which
    # must share everything but the defense's own fields).
    attack, defense = frame["attack.name"], frame["defense.name"]
    n = len(frame)
    averaged = _ids(_codes([*chosen_texts, attack, defense]), n)
    compared = _ids(_codes([*chosen_texts, attack]), n)
    poisoned = settings[[p for p in settings.columns if not p.startswith("defense.")]]
    differ = _varying(settings, averaged) | _varying(poisoned, compared)
    split = split_columns(differ, settings[sorted(differ)].to_dict("records"))
    split = sorted(split, key=lambda path: not splits_rankings(path))  # a defense's own last
    names = [*chosen_by, *map(_short, split)]
    if split:
        warnings.append(split_warning(split, differ))

    # One row per slot: names, group values and seeds from its results, metrics over them.
    row_of = pd.Series(_ids(slot[:, None], n), index=frame.index)
    groups = [f"group.{i}" for i in range(len(names))]
    kept_results = [results[i] for i in frame.index]
    split_texts = (pd.Series(value_texts(field_values(frame, kept_results, path)),
                             index=frame.index) for path in split)  # fmt: skip
    texts = [*chosen_texts, *split_texts]
    baseline = pd.Series([is_baseline(results[i]["defense"]) for i in frame.index],
                         index=frame.index)  # fmt: skip
    per_result = pd.DataFrame({"attack": attack, "defense": defense, "seed": frame["seed"],
                               "baseline": baseline,
                               **dict(zip(groups, texts, strict=True))})  # fmt: skip
    grouped = per_result.groupby(row_of)
    rows = grouped.first().assign(seeds=grouped["seed"].nunique(),
                                  baseline=grouped["baseline"].any())  # fmt: skip
    stats = over_seeds(metrics, row_of)
    warning = nonfinite_warning(metrics[keys], results)
    if warning:
        warnings.append(warning)

    # The ranking rule (reporting.ranking): a row ranks when its model is usable, against the
    # rows of its attack that share every group value but the defense's own settings.
    drops = metrics["before_ca"] - metrics["after_ca"]
    members = {row: list(index) for row, index in row_of.groupby(row_of).groups.items()}
    members = {row: sorted(index, key=lambda i: _seed_order(results[i])) for row, index in
               members.items()}  # fmt: skip
    checks = {row: eligibility([results[i].get("seed") for i in index],
                               [float(drops[i]) for i in index],
                               [untrained(results[i]) for i in index], tolerance)
              for row, index in members.items()}  # fmt: skip
    rows = rows.assign(eligible=[checks[row].eligible for row in rows.index])
    paths = [FIELD_ALIASES.get(name, name) for name in chosen_by] + split
    scope = [g for g, path in zip(groups, paths, strict=True) if splits_rankings(path)]
    others = [g for g in groups if g not in scope]
    mean = stats["mean"][sort].where(stats["count"][sort] > 0)
    ordered = ranked(rows, scope, others, mean, stats["nonfinite"][sort], sign)
    cells = spreads(stats)
    lines = zip(ordered.index, ordered.to_dict("records"), strict=True)
    made = {row: Row(line["attack"], line["defense"], int(line["seeds"]), cells[row],
                     tuple(line[g] for g in groups), best=bool(line["best"]),
                     baseline=bool(line["baseline"]), rank=int(line["rank"]),
                     rank_text=rank_text(int(line["rank"]), bool(line["baseline"]), checks[row],
                                         line["tier"] == 0 or not line["eligible"]),
                     eligible=checks[row].eligible, ca_drop=checks[row].ca_drop,
                     members=tuple(members[row]), basis=_basis(results, members[row]))
            for row, line in lines}  # fmt: skip
    warnings += runtime_warnings(frame, row_of, {row: _row_name(made[row], names)
                                                  for row in made})  # fmt: skip
    in_scope = tuple(name for name, g in zip(names, groups, strict=True) if g in scope)
    return Board(list(made.values()), names, warnings, sort, tolerance, metrics, in_scope)


def _basis(results: Sequence[Mapping[str, Any]], members: list[int]) -> str:
    """The classifier basis of a row's before and after (reporting.result_frame.like_with_like)."""
    bases = {(results[i].get("extra") or {}).get("der_basis") or "zero-shot" for i in members}
    return LINEAR_PROBE if LINEAR_PROBE in bases else "zero-shot"


def _seed_order(result: Mapping[str, Any]) -> tuple[int, Any]:
    seed = result.get("seed")
    return (0, seed) if isinstance(seed, (int, float)) else (1, str(seed))


def leaderboard(results: list[dict], group_by: list[str] | None = None, sort: str = DEFAULT_SORT,
                columns: Sequence[str] | None = None,
                ca_tolerance: float = DEFAULT_CA_TOLERANCE) -> list[Row]:  # fmt: skip
    """The rows of `tabulate` (its group columns and warnings dropped)."""
    return tabulate(results, group_by, sort, columns, ca_tolerance).rows
