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

The file is TOML, read with tomllib and checked field by field; nothing in it is evaluated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbd.core.errors import BenchbdError
from benchbd.reporting.experiments import (
    experiment_key,
    newest_per_seed,
    settings,
    split_columns,
    varying,
)
from benchbd.reporting.intervals import (
    COMPARISONS,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    Interval,
    interval,
    ratio_interval,
    verdict,
)
from benchbd.reporting.result_frame import apply_filters, load_folder

NO_RESULTS = "no results"
# The fewest seeds a claim is decided on (holds or fails); a claim's `min_seeds` may ask more.
DECIDING_SEEDS = 5
CLAIM_KEYS = {"id", "claim", "paper", "folder", "attack", "defense", "where", "metric",
              "comparison", "threshold", "over", "min_seeds"}  # fmt: skip
OVER_KEYS = {"folder", "attack", "defense", "where", "metric"}
REQUIRED = ("id", "claim", "folder", "metric", "comparison", "threshold")
ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
TERM = r"[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*"
METRIC = re.compile(rf"\s*{TERM}\s*(?:[-+]\s*{TERM}\s*)*")


@dataclass(frozen=True)
class Metric:
    """A sum of recorded metrics with signs: `after.asr`, or `before.ca - after.ca` (the CA
    drop). Each path is read under the result's `metrics`; `der` is the result's DER."""

    text: str
    terms: tuple[tuple[int, str], ...]

    def of(self, result: Mapping[str, Any]) -> float:
        """The metric of one result; NaN where it records a term as missing or not a number."""
        total = 0.0
        for sign, path in self.terms:
            value: Any = result if path.split(".")[0] == "der" else result.get("metrics", {})
            for part in path.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return math.nan
            total += sign * float(value)
        return total


@dataclass(frozen=True)
class Selection:
    """The results one side of a claim reads: a folder and filters on recorded fields."""

    folder: Path
    attack: str | None
    defense: str | None
    where: tuple[tuple[str, str], ...]
    metric: Metric

    def describe(self) -> str:
        parts = [str(self.folder)]
        parts += [f"{k}={v}" for k, v in (("attack", self.attack), ("defense", self.defense)) if v]
        parts += [f"{k}={v}" for k, v in self.where]
        return " ".join(parts)


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    paper: str | None
    selection: Selection
    over: Selection | None  # the denominator of a ratio claim
    comparison: str
    threshold: float
    min_seeds: int | None  # a claim's own minimum, when more than DECIDING_SEEDS

    def seeds_needed(self) -> int:
        return max(DECIDING_SEEDS, self.min_seeds or 0)

    def statement(self) -> str:
        metric = self.selection.metric.text
        if self.over is not None:
            over = self.over.metric.text
            metric = (f"ratio of mean {metric}" if over == metric
                      else f"mean {metric} / mean {over}")  # fmt: skip
        return f"{metric} {self.comparison} {self.threshold:g}"


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
        if self.claim.over is None or self.paired:
            return str(self.found.n)
        return f"{len(self.values)} / {len(self.over_values)}"

    def seeds_read(self) -> int:
        """The seeds the verdict rests on: a ratio claim's smaller side."""
        return min(len(self.values), len(self.over_values) if self.claim.over else len(self.values))

    def note(self) -> str:
        needed = self.claim.seeds_needed()
        n = self.seeds_read()
        if self.verdict == NO_RESULTS or n >= needed:
            return ""
        alone = self.by_interval
        alone = "" if alone == INCONCLUSIVE else f"; the interval alone: {alone}"
        return f"{n} of {needed} seeds{alone}"

    def citation(self) -> str:
        """How the docs cite it: claim `ID`: VERDICT, MEAN [LOW, HIGH], n = N."""
        if self.verdict == NO_RESULTS:
            return f"claim `{self.claim.id}`: {NO_RESULTS}"
        found = f"{self.interval_text()}, n = {self.n_text()}"
        return f"claim `{self.claim.id}`: {self.verdict}, {found}"


# --- reading the claim file -------------------------------------------------------------


def _error(claim_id: str, field: str, message: str) -> BenchbdError:
    return BenchbdError(f"claim {claim_id!r}, field {field!r}: {message}")


def _text(entry: Mapping[str, Any], key: str, claim_id: str, required: bool = False,
          prefix: str = "") -> str | None:  # fmt: skip
    value = entry.get(key)
    if value is None:
        if required:
            raise _error(claim_id, prefix + key, "missing")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _error(claim_id, prefix + key, f"must be a non-empty string, not {value!r}")
    return value.strip()


def _metric(text: Any, claim_id: str, field: str) -> Metric:
    if not isinstance(text, str) or not METRIC.fullmatch(text):
        raise _error(claim_id, field, f"{text!r} is not a metric path or a sum of them "
                     "(e.g. after.asr, before.ca - after.ca)")  # fmt: skip
    terms, sign = [], 1
    for token in re.findall(rf"{TERM}|[-+]", text):
        if token in "+-":
            sign = -1 if token == "-" else 1
        else:
            terms.append((sign, token))
            sign = 1
    return Metric(" ".join(text.split()), tuple(terms))


def _where(value: Any, claim_id: str, field: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise _error(claim_id, field, "must be a table of FIELD = VALUE")
    pairs = []
    for name, wanted in value.items():
        number = isinstance(wanted, (int, float)) and not isinstance(wanted, bool)
        if number and not math.isfinite(wanted):
            raise _error(claim_id, f"{field}.{name}", f"not a finite number: {wanted!r}")
        if not (number or isinstance(wanted, str)):
            raise _error(claim_id, f"{field}.{name}", f"not a number or a string: {wanted!r}")
        pairs.append((str(name), repr(float(wanted)) if number else wanted))
    return tuple(pairs)


def _selection(entry: Mapping[str, Any], base: Selection | None, claim_id: str,
               prefix: str = "") -> Selection:  # fmt: skip
    """A selection from `entry`; keys it leaves out come from `base` (the numerator), except
    `where`, which a denominator states whole."""
    folder_text = _text(entry, "folder", claim_id, required=base is None, prefix=prefix)
    folder = Path(folder_text) if folder_text else base.folder  # type: ignore[union-attr]
    if not folder.is_dir():
        raise _error(claim_id, prefix + "folder", f"no folder {str(folder)!r}")
    attack = _text(entry, "attack", claim_id, prefix=prefix) or (base.attack if base else None)
    defense = _text(entry, "defense", claim_id, prefix=prefix) or (base.defense if base else None)
    if "metric" in entry or base is None:
        metric = _metric(entry.get("metric"), claim_id, prefix + "metric")
    else:
        metric = base.metric
    return Selection(folder, attack, defense, _where(entry.get("where"), claim_id,
                                                     prefix + "where"), metric)  # fmt: skip


def parse_claim(entry: Any, index: int) -> Claim:
    """One `[[claim]]` table, every field checked; a mistake names the claim and the field."""
    if not isinstance(entry, Mapping):
        raise BenchbdError(f"claim #{index + 1} is not a table")
    raw_id = entry.get("id")
    claim_id = raw_id if isinstance(raw_id, str) else f"#{index + 1}"
    if not isinstance(raw_id, str) or not ID.fullmatch(raw_id):
        raise _error(claim_id, "id", "must be lower-case words joined by '-' "
                     f"(e.g. sig-survives-cleanclip), not {raw_id!r}")  # fmt: skip
    unknown = sorted(set(entry) - CLAIM_KEYS)
    if unknown:
        raise _error(claim_id, unknown[0], f"unknown field; known: {', '.join(sorted(CLAIM_KEYS))}")
    for key in REQUIRED:
        if key not in entry:
            raise _error(claim_id, key, "missing")
    comparison = entry["comparison"]
    if comparison not in COMPARISONS:
        known = ", ".join(COMPARISONS)
        raise _error(claim_id, "comparison", f"{comparison!r} is not one of {known}")
    threshold = entry["threshold"]
    number = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
    if not number or not math.isfinite(threshold):
        raise _error(claim_id, "threshold", f"must be a finite number, not {threshold!r}")
    min_seeds = entry.get("min_seeds")
    if min_seeds is not None and (isinstance(min_seeds, bool) or not isinstance(min_seeds, int)
                                  or min_seeds < 2):  # fmt: skip
        raise _error(claim_id, "min_seeds", f"must be a whole number >= 2, not {min_seeds!r}")
    selection = _selection(entry, None, claim_id)
    over = entry.get("over")
    if over is not None:
        if not isinstance(over, Mapping):
            raise _error(claim_id, "over", "must be a table (the ratio's denominator)")
        unknown = sorted(set(over) - OVER_KEYS)
        if unknown:
            raise _error(claim_id, f"over.{unknown[0]}",
                         f"unknown field; known: {', '.join(sorted(OVER_KEYS))}")  # fmt: skip
        over = _selection(over, selection, claim_id, prefix="over.")
    text = _text(entry, "claim", claim_id, required=True)
    return Claim(raw_id, text, _text(entry, "paper", claim_id), selection, over,  # type: ignore[arg-type]
                 comparison, float(threshold), min_seeds)  # fmt: skip


def read_claims(path: Path) -> list[Claim]:
    """The claims of a TOML file (or of `claims.toml` in a folder), in file order."""
    import tomllib  # Python 3.11+, as `benchbd sweep --grid` needs

    path = Path(path)
    if path.is_dir():
        path = path / "claims.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchbdError(f"no claim file {str(path)!r}") from None
    except UnicodeDecodeError:
        raise BenchbdError(f"claim file {str(path)!r} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchbdError(f"claim file {str(path)!r} is not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"claim"})
    if unknown:
        raise BenchbdError(f"claim file {str(path)!r}: unknown top-level key {unknown[0]!r} "
                           "(claims are [[claim]] tables)")  # fmt: skip
    entries = data.get("claim")
    if not isinstance(entries, list) or not entries:
        raise BenchbdError(f"claim file {str(path)!r} has no [[claim]] table")
    claims = [parse_claim(entry, i) for i, entry in enumerate(entries)]
    seen: set[str] = set()
    for claim in claims:
        if claim.id in seen:
            raise _error(claim.id, "id", "used by two claims")
        seen.add(claim.id)
    return claims


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
            raise _error(claim_id, "where", str(exc)) from None
    if not results:
        return []
    flats = [settings(r) for r in results]
    keys = [experiment_key(flat) for flat in flats]
    if len(set(keys)) > 1:
        differ = ", ".join(split_columns(varying([flats]), flats)[:4])
        raise _error(claim_id, "where", f"{selection.describe()} reads {len(set(keys))} "
                     f"experiments that differ in {differ}: filter on them")  # fmt: skip
    kept = newest_per_seed(results, keys)
    return sorted((results[i] for i in kept), key=lambda r: r["seed"])


def _by_seed(results: Sequence[Mapping[str, Any]], metric: Metric) -> tuple[tuple, tuple]:
    return tuple(r["seed"] for r in results), tuple(metric.of(r) for r in results)


def decide(claim: Claim, folders: Folders) -> Decision:
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
