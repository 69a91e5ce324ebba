"""How results are ranked: one rule for every table, plot and site benchbd writes.

Within an attack and a fixed setting (the rows a table ranks against each other: the same
attack and the same values of every group column that is not the defense's own parameter), a
row is eligible to rank only if its defended model is usable:

- its CA drop (CA before minus CA after, both on the classifier the after uses, see
  benchbd.reporting.result_frame.like_with_like), the mean over its seeds, is at most the tolerance
  (`--ca-tolerance`, 0.05 by default);
- and every one of its seeds trained a model: a screen that kept fewer pairs than one batch
  leaves the untrained model (`extra.screen.trained` false), and a row that averages in such a
  seed does not rank, whatever its mean.

Eligible rows are sorted by the table's sort column, best first, and numbered; the first that
is not a baseline is the best (bold, ★). Ineligible rows stay in the table after the eligible
ones, unnumbered, with the reason ("CA drop 0.113 > 0.05", "untrained on 1 of 3 seeds"). A
row whose mean drop is within the tolerance but one of whose seeds' is not still ranks, and its
rank says which seed ("2; seed 1 CA drop 0.071"): a reader sees the risk, the rule stays on the
mean that the table shows.

Variants of one defense (a learning rate, SafeCLIP's start) compete: a group column that is the
defense's own setting (`defense.*`) splits rows, never rankings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchbd.core.errors import BenchbdError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_CA_TOLERANCE = 0.05
DEFENSE_SETTING = "defense."  # a group column under this path is a variant of the defense
RANK_HEADER = "rank"
BASELINE = "baseline"  # the rank text of a reference point (defense `none`): never best


def check_tolerance(value: Any) -> float:
    """The CA tolerance, a finite number in [0, 1]; anything else is an error."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or not 0 <= number <= 1:
        raise BenchbdError(f"--ca-tolerance must be a finite number in [0, 1], not {value!r}")
    return number


def untrained(result: Mapping[str, Any]) -> bool:
    """Whether the defended model of this result was never trained (a screen that left too few
    pairs to train on records `extra.screen.trained` false; a stage may record the same)."""
    extra = result.get("extra") or {}
    return any(isinstance(extra.get(part), Mapping) and extra[part].get("trained") is False
               for part in ("screen", "stage"))  # fmt: skip


def splits_rankings(path: str) -> bool:
    """Whether a group column separates rankings: every setting but the defense's own."""
    return not path.startswith(DEFENSE_SETTING)


@dataclass(frozen=True)
class Eligibility:
    """Whether a row may rank, why not (`reason`), and a caveat of an eligible row (`note`)."""

    eligible: bool
    ca_drop: float | None  # mean over the seeds with a finite drop
    reason: str = ""
    note: str = ""


def eligibility(seeds: Sequence[Any], drops: Sequence[float], untrained_seeds: Sequence[bool],
                tolerance: float = DEFAULT_CA_TOLERANCE) -> Eligibility:  # fmt: skip
    """A row's eligibility from its seeds' CA drops and whether each trained a model."""
    finite = [(s, d) for s, d in zip(seeds, drops, strict=True) if d is not None and
              math.isfinite(d)]  # fmt: skip
    mean = math.fsum(d for _, d in finite) / len(finite) if finite else None
    bad = sum(bool(u) for u in untrained_seeds)
    if bad:
        of = f" on {bad} of {len(untrained_seeds)} seeds" if len(untrained_seeds) > 1 else ""
        return Eligibility(False, mean, f"untrained{of}")
    if mean is None:
        return Eligibility(False, None, "no finite CA drop")
    if mean > tolerance + 1e-12:
        return Eligibility(False, mean, f"CA drop {mean:.3f} > {tolerance:g}")
    over = [f"seed {s} CA drop {d:.3f}" for s, d in finite if d > tolerance + 1e-12]
    return Eligibility(True, mean, note="; ".join(over))


def natural(text: str) -> tuple[int, float, str]:
    """Group values sort as numbers when they are numbers (2 before 10)."""
    try:
        number = float(text)
    except ValueError:
        return (1, 0.0, text)
    return (0, number, text) if math.isfinite(number) else (1, 0.0, text)


def ranked(rows: pd.DataFrame, scope: list[str], others: list[str], mean: pd.Series,
           nonfinite: pd.Series, sign: int) -> pd.DataFrame:  # fmt: skip
    """The rows in table order with `rank` (1, 2, ... for eligible rows that are no baseline,
    0 otherwise) and `best` (rank 1). `rows` has columns attack, defense, baseline, eligible and
    the group columns: `scope` (they separate rankings) and `others` (a defense's variants).
    Order: scope values (numbers as numbers), attack, then eligible rows with a finite value,
    best first; ineligible ones; rows with a non-finite value; rows without one."""
    import numpy as np

    tier = np.where(mean.isna(), 3, np.where(nonfinite > 0, 2,
                                             np.where(rows["eligible"], 0, 1)))  # fmt: skip
    ordered = rows.assign(tier=tier, score=-sign * mean.fillna(0.0))

    def keys(groups: list[str]) -> list[str]:
        nonlocal ordered
        by = []
        for group in groups:
            kind, number, text = zip(*map(natural, ordered[group]), strict=True)
            ordered = ordered.assign(**{f"{group}.kind": kind, f"{group}.number": number,
                                        f"{group}.text": text})  # fmt: skip
            by += [f"{group}.kind", f"{group}.number", f"{group}.text"]
        return by

    first, last = keys(scope), keys(others)
    ordered = ordered.sort_values([*first, "attack", "tier", "score", "defense", *last],
                                  kind="stable")  # fmt: skip
    counted = (~ordered["baseline"]) & (ordered["tier"] == 0)
    rank = counted.astype(int).groupby([ordered[c] for c in [*scope, "attack"]]).cumsum()
    rank = rank.where(counted, 0)
    return ordered.assign(rank=rank, best=rank == 1)


def rank_text(rank: int, baseline: bool, check: Eligibility, finite: bool) -> str:
    """What a table's rank column says of a row."""
    if not check.eligible:
        return f"unranked: {check.reason}"
    if not finite:
        return "unranked: no finite value to rank by"
    text = BASELINE if baseline else str(rank)
    return f"{text}; {check.note}" if check.note else text


def rule_text(sort_header: str, tolerance: float) -> str:
    """The ranking rule in one sentence, for a table's footnote and the site."""
    return (f"rank: within an attack and setting, by {sort_header}, best first, among rows "
            f"whose mean CA drop over seeds (before - after, same classifier) is at most "
            f"{tolerance:g} and whose every seed trained a model; a defense's variants compete; "
            f"baselines are never ranked; unranked rows say why.")  # fmt: skip
