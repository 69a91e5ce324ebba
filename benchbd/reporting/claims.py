"""Claims the docs make, decided from the committed results with their uncertainty.

A claim file (`results/claims.toml`) lists each claim once: what it says, the results it reads
(a folder, an attack, a defense and `where` filters on any recorded field), the metric, and the
comparison with a threshold. Deciding a claim reads those results, keeps one file per seed of
one experiment (reporting.experiments: a selection that mixes experiments is a mistake in the
claim, reported with the settings that differ), computes the metric per seed, the mean, n and
the 95 % Student t interval (benchbd.reporting.intervals), and reads the verdict from the interval:
holds, fails or inconclusive; a claim that reads no result is "no results". A claim is decided
(holds or fails) only on at least `DECIDING_SEEDS` seeds, or its own `min_seeds` where that is
more (the headline claims on digits ask for 10): with fewer it is inconclusive whatever its
interval says, and the note beside it says how many seeds it read and what the interval alone
would say, so that three well-separated seeds are reported as what they are, a first sign.

A ratio claim (`[claim.over]`: the denominator's selection) compares the means of two
selections. Its interval is Fieller's for a ratio of means: the set of ratios r for which
mean(num) - r * mean(den) is within the t interval of zero. Where the two selections ran the
same seeds, the seeds pair (the covariance enters, n - 1 degrees of freedom); otherwise the
two are independent (the smaller n - 1 degrees of freedom). When the denominator's own
interval reaches zero, the set is unbounded and the verdict inconclusive: a small mean under
a noisy ratio is not evidence. A mean of per-seed ratios would let one seed's near-zero
denominator decide the claim; a bootstrap has too few seeds to resample.

A zoo claim (`detector = "NAME"`) reads a model detector's scores over a zoo instead, with
an interval over the zoo's models (benchbd.reporting.zoo_claims).

The claim file and its checks are benchbd.reporting.claim_file; this module decides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbd.core.errors import BenchbdError
from benchbd.reporting.claim_file import (
    DECIDING_SEEDS,
    Claim,
    Metric,
    Selection,
    claim_error,
    parse_claim,
    read_claims,
)
from benchbd.reporting.experiments import (
    experiment_key,
    newest_per_seed,
    settings,
    split_columns,
    varying,
)
from benchbd.reporting.intervals import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    Interval,
    interval,
    ratio_interval,
    verdict,
)
from benchbd.reporting.result_frame import apply_filters, load_folder
from benchbd.reporting.zoo_claims import (
    DECIDING_MODELS,
    read_detection,
    zoo_interval,
)

NO_RESULTS = "no results"
__all__ = ["DECIDING_SEEDS", "NO_RESULTS", "Claim", "Decision", "Metric", "Selection",
           "decide_all", "parse_claim", "read_claims"]  # fmt: skip


@dataclass(frozen=True)
class Decision:
    """A claim, the values it read (by seed) and its verdict."""

    claim: Claim
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    over_seeds: tuple[int, ...]
    over_values: tuple[float, ...]
    found: Interval
    verdict: str
    paired: bool
    by_interval: str  # what the interval alone says, whatever the number of seeds
    models: tuple[int, int] | None = None  # a zoo claim's poisoned and clean test models

    def interval_text(self) -> str:
        f = self.found
        if f.mean is None:
            return "-"
        if f.low is None or f.high is None:
            return f"{f.mean:.3f}"
        if math.isinf(f.low) or math.isinf(f.high):
            return f"{f.mean:.3f} [unbounded]"
        return f"{f.mean:.3f} [{f.low:.3f}, {f.high:.3f}]"

    def n_text(self) -> str:
        if self.models is not None:
            return f"{self.found.n} models"
        if self.claim.over is None or self.paired:
            return str(self.found.n)
        return f"{len(self.values)} / {len(self.over_values)}"

    def seeds_read(self) -> int:
        """The seeds the verdict rests on: a ratio claim's smaller side."""
        return min(len(self.values), len(self.over_values) if self.claim.over else len(self.values))

    def note(self) -> str:
        alone = self.by_interval
        alone = "" if alone == INCONCLUSIVE else f"; the interval alone: {alone}"
        if self.models is not None:
            poisoned, clean = self.models
            if self.verdict == NO_RESULTS or min(poisoned, clean) >= DECIDING_MODELS:
                return ""
            return (f"{poisoned} poisoned and {clean} clean test models, {DECIDING_MODELS} "
                    f"of each needed{alone}")  # fmt: skip
        needed = self.claim.seeds_needed()
        n = self.seeds_read()
        if self.verdict == NO_RESULTS or n >= needed:
            return ""
        return f"{n} of {needed} seeds{alone}"

    def citation(self) -> str:
        """How the docs cite it: claim `ID`: VERDICT, MEAN [LOW, HIGH], n = N."""
        if self.verdict == NO_RESULTS:
            return f"claim `{self.claim.id}`: {NO_RESULTS}"
        found = f"{self.interval_text()}, n = {self.n_text()}"
        return f"claim `{self.claim.id}`: {self.verdict}, {found}"


# --- deciding -----------------------------------------------------------------------------


class Folders:
    """Each results folder read once, however many claims read it."""

    def __init__(self) -> None:
        self._read: dict[Path, list[dict]] = {}

    def results(self, folder: Path) -> list[dict]:
        key = Path(folder).resolve()
        if key not in self._read:
            self._read[key] = load_folder(folder)[0]
        return self._read[key]


def select(selection: Selection, folders: Folders, claim_id: str) -> list[Mapping[str, Any]]:
    """One result per seed of the one experiment `selection` reads (none if it reads none)."""
    attack, defense = selection.attack, selection.defense
    results = [r for r in folders.results(selection.folder)
               if (attack is None or r["attack"]["name"] == attack)
               and (defense is None or r["defense"]["name"] == defense)]  # fmt: skip
    if results and selection.where:
        try:
            results = apply_filters(results, list(selection.where))
        except BenchbdError as exc:
            raise claim_error(claim_id, "where", str(exc)) from None
    if not results:
        return []
    flats = [settings(r) for r in results]
    keys = [experiment_key(flat) for flat in flats]
    if len(set(keys)) > 1:
        differ = ", ".join(split_columns(varying([flats]), flats)[:4])
        raise claim_error(claim_id, "where", f"{selection.describe()} reads {len(set(keys))} "
                     f"experiments that differ in {differ}: filter on them")  # fmt: skip
    kept = newest_per_seed(results, keys)
    return sorted((results[i] for i in kept), key=lambda r: r["seed"])


def _by_seed(results: Sequence[Mapping[str, Any]], metric: Metric) -> tuple[tuple, tuple]:
    return tuple(r["seed"] for r in results), tuple(metric.of(r) for r in results)


def decide_zoo(claim: Claim) -> Decision:
    """A zoo claim: the metric over the zoo's test models with its score interval."""
    selection = claim.selection
    rows = read_detection(selection.folder, selection.detector or "", claim.id)
    found, poisoned, clean = zoo_interval(rows, selection.metric.text)
    by_interval = (NO_RESULTS if found.mean is None
                   else verdict(found, claim.comparison, claim.threshold))  # fmt: skip
    enough = min(poisoned, clean) >= DECIDING_MODELS
    outcome = by_interval if enough or by_interval not in (HOLDS, FAILS) else INCONCLUSIVE
    return Decision(claim, (), (), (), (), found, outcome, False, by_interval, (poisoned, clean))


def decide(claim: Claim, folders: Folders) -> Decision:
    if claim.selection.detector is not None:
        return decide_zoo(claim)
    seeds, values = _by_seed(select(claim.selection, folders, claim.id), claim.selection.metric)
    over_seeds: tuple = ()
    over_values: tuple = ()
    paired = False
    if claim.over is not None:
        over = select(claim.over, folders, claim.id)
        over_seeds, over_values = _by_seed(over, claim.over.metric)
        paired = bool(seeds) and seeds == over_seeds
        found = (ratio_interval(values, over_values, paired) if values and over_values
                 else Interval(None, None, None, 0))  # fmt: skip
    else:
        found = interval(values)
    by_interval = (NO_RESULTS if found.mean is None
                   else verdict(found, claim.comparison, claim.threshold))  # fmt: skip
    enough = min(len(values), len(over_values) if claim.over else len(values))
    outcome = (INCONCLUSIVE if by_interval in (HOLDS, FAILS) and enough < claim.seeds_needed()
               else by_interval)  # fmt: skip
    return Decision(claim, seeds, values, over_seeds, over_values, found, outcome, paired,
                    by_interval)  # fmt: skip


def decide_all(claims: Sequence[Claim]) -> list[Decision]:
    folders = Folders()
    return [decide(claim, folders) for claim in claims]
