"""The claim file: what each claim says, the results it reads, and its test, checked field by
field.

A claim file (`results/claims.toml`) lists each claim once as a `[[claim]]` table: `id`, the
`claim` in words, the `paper` it comes from, the results it reads (a `folder`, an `attack`, a
`defense` and `where` filters on any recorded field), the `metric`, and the `comparison` with
a `threshold`; `[claim.over]` makes it a ratio claim (the denominator's selection), `min_seeds`
asks for more seeds than DECIDING_SEEDS, and `detector` makes it a zoo claim (a model
detector's scores over a zoo: benchbd.reporting.zoo_claims). The file is TOML, read with
tomllib; nothing in it is evaluated. benchbd.reporting.claims decides what it reads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbd.core.errors import BenchbdError
from benchbd.reporting.intervals import COMPARISONS
from benchbd.reporting.zoo_claims import ZOO_METRICS

# The fewest seeds a claim is decided on (holds or fails); a claim's `min_seeds` may ask more.
DECIDING_SEEDS = 5
CLAIM_KEYS = {"id", "claim", "paper", "folder", "attack", "defense", "where", "metric",
              "comparison", "threshold", "over", "min_seeds", "detector"}  # fmt: skip
OVER_KEYS = {"folder", "attack", "defense", "where", "metric"}
REQUIRED = ("id", "claim", "folder", "metric", "comparison", "threshold")
DETECTOR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # it names a file: detect-NAME.json
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
    detector: str | None = None  # a zoo claim's model detector

    def describe(self) -> str:
        parts = [str(self.folder)]
        named = (("attack", self.attack), ("defense", self.defense), ("detector", self.detector))
        parts += [f"{k}={v}" for k, v in named if v]
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


# --- reading the claim file -------------------------------------------------------------


def claim_error(claim_id: str, field: str, message: str) -> BenchbdError:
    return BenchbdError(f"claim {claim_id!r}, field {field!r}: {message}")


def _text(entry: Mapping[str, Any], key: str, claim_id: str, required: bool = False,
          prefix: str = "") -> str | None:  # fmt: skip
    value = entry.get(key)
    if value is None:
        if required:
            raise claim_error(claim_id, prefix + key, "missing")
        return None
    if not isinstance(value, str) or not value.strip():
        raise claim_error(claim_id, prefix + key, f"must be a non-empty string, not {value!r}")
    return value.strip()


def _metric(text: Any, claim_id: str, field: str) -> Metric:
    if not isinstance(text, str) or not METRIC.fullmatch(text):
        raise claim_error(claim_id, field, f"{text!r} is not a metric path or a sum of them "
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
        raise claim_error(claim_id, field, "must be a table of FIELD = VALUE")
    pairs = []
    for name, wanted in value.items():
        number = isinstance(wanted, (int, float)) and not isinstance(wanted, bool)
        if number and not math.isfinite(wanted):
            raise claim_error(claim_id, f"{field}.{name}", f"not a finite number: {wanted!r}")
        if not (number or isinstance(wanted, str)):
            raise claim_error(claim_id, f"{field}.{name}", f"not a number or a string: {wanted!r}")
        pairs.append((str(name), repr(float(wanted)) if number else wanted))
    return tuple(pairs)


def _selection(entry: Mapping[str, Any], base: Selection | None, claim_id: str,
               prefix: str = "") -> Selection:  # fmt: skip
    """A selection from `entry`; keys it leaves out come from `base` (the numerator), except
    `where`, which a denominator states whole."""
    folder_text = _text(entry, "folder", claim_id, required=base is None, prefix=prefix)
    folder = Path(folder_text) if folder_text else base.folder  # type: ignore[union-attr]
    if not folder.is_dir():
        raise claim_error(claim_id, prefix + "folder", f"no folder {str(folder)!r}")
    attack = _text(entry, "attack", claim_id, prefix=prefix) or (base.attack if base else None)
    defense = _text(entry, "defense", claim_id, prefix=prefix) or (base.defense if base else None)
    if "metric" in entry or base is None:
        metric = _metric(entry.get("metric"), claim_id, prefix + "metric")
    else:
        metric = base.metric
    where = _where(entry.get("where"), claim_id, prefix + "where")
    return Selection(folder, attack, defense, where, metric,
                     None if prefix else _text(entry, "detector", claim_id))  # fmt: skip


def _check_zoo_claim(entry: Mapping[str, Any], selection: Selection, claim_id: str) -> None:
    """A zoo claim reads one detector's scores: no result filters, no ratio, a zoo metric."""
    for key in ("attack", "defense", "where", "over", "min_seeds"):
        if key in entry:
            raise claim_error(claim_id, key, "a zoo claim (detector = ...) reads the detector's "
                         "scores over the whole zoo; leave this field out")  # fmt: skip
    if not DETECTOR.fullmatch(selection.detector or ""):
        raise claim_error(claim_id, "detector", f"{selection.detector!r} is not a model "
                          "detector's name (letters, digits, '_' and '-')")  # fmt: skip
    if selection.metric.text not in ZOO_METRICS:
        raise claim_error(claim_id, "metric", f"a zoo claim's metric is one of "
                     f"{', '.join(ZOO_METRICS)}, not {selection.metric.text!r}")  # fmt: skip


def parse_claim(entry: Any, index: int) -> Claim:
    """One `[[claim]]` table, every field checked; a mistake names the claim and the field."""
    if not isinstance(entry, Mapping):
        raise BenchbdError(f"claim #{index + 1} is not a table")
    raw_id = entry.get("id")
    claim_id = raw_id if isinstance(raw_id, str) else f"#{index + 1}"
    if not isinstance(raw_id, str) or not ID.fullmatch(raw_id):
        raise claim_error(claim_id, "id", "must be lower-case words joined by '-' "
                     f"(e.g. sig-survives-cleanclip), not {raw_id!r}")  # fmt: skip
    unknown = sorted(set(entry) - CLAIM_KEYS)
    if unknown:
        known = ", ".join(sorted(CLAIM_KEYS))
        raise claim_error(claim_id, unknown[0], f"unknown field; known: {known}")
    for key in REQUIRED:
        if key not in entry:
            raise claim_error(claim_id, key, "missing")
    comparison = entry["comparison"]
    if comparison not in COMPARISONS:
        known = ", ".join(COMPARISONS)
        raise claim_error(claim_id, "comparison", f"{comparison!r} is not one of {known}")
    threshold = entry["threshold"]
    number = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
    if not number or not math.isfinite(threshold):
        raise claim_error(claim_id, "threshold", f"must be a finite number, not {threshold!r}")
    min_seeds = entry.get("min_seeds")
    if min_seeds is not None and (isinstance(min_seeds, bool) or not isinstance(min_seeds, int)
                                  or min_seeds < 2):  # fmt: skip
        raise claim_error(claim_id, "min_seeds", f"must be a whole number >= 2, not {min_seeds!r}")
    selection = _selection(entry, None, claim_id)
    if selection.detector is not None:
        _check_zoo_claim(entry, selection, claim_id)
    over = entry.get("over")
    if over is not None:
        if not isinstance(over, Mapping):
            raise claim_error(claim_id, "over", "must be a table (the ratio's denominator)")
        unknown = sorted(set(over) - OVER_KEYS)
        if unknown:
            raise claim_error(claim_id, f"over.{unknown[0]}",
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
            raise claim_error(claim.id, "id", "used by two claims")
        seen.add(claim.id)
    return claims
