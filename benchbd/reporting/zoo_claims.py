"""Claims about a model detector over a zoo, decided with an interval over the zoo's models.

A model detector is measured on a zoo (`benchbd zoo --detect NAME`), which writes
`detect-NAME.json`: every model's score, the attack's target and the target the detector
named. A claim with `detector = "NAME"` reads that file in its `folder` and decides one of
ZOO_METRICS on the zoo's test part (the models the split rule keeps for reporting; the
validation part only fixes thresholds):

- `auroc`: the detector's AUROC, poisoned models positive;
- `target_accuracy`: among poisoned models, the share whose named target is the attack's.

The uncertainty is over models, not seeds: the zoo is a sample of models, and a zoo of 40
cannot be rerun five times. Both intervals are score intervals, which stay wide where the
sample is small even when it is perfectly separated (a bootstrap would collapse to [1, 1]
there, and a normal-approximation interval to a point):

- AUROC: Newcombe's score interval for the Mann-Whitney effect size (Newcombe 2006, "Confidence
  intervals for an effect size measure based on the Mann-Whitney statistic. Part 2", method
  5): every A with (Â - A)^2 <= z^2 V(A), V(A) the Hanley-McNeil variance at A with both group
  sizes replaced by N* = (m + n) / 2 - 1. With 8 poisoned and 8 clean models perfectly
  separated it is [0.78, 1]: a detector whose true AUROC were 0.9 would separate such a sample
  perfectly about one time in nine.
- target accuracy: Wilson's score interval of the share of poisoned test models whose named
  target is the attack's (scipy's `binomtest(...).proportion_ci(method="wilson")`).

A zoo claim is decided only when the test part holds at least DECIDING_MODELS poisoned and
DECIDING_MODELS clean models; with fewer it is inconclusive, and its note says what the
interval alone would say, as a claim read on too few seeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchbd.core.errors import BenchbdError
from benchbd.reporting.intervals import Interval

ZOO_METRICS = ("auroc", "target_accuracy")
DECIDING_MODELS = 8  # poisoned and clean models each, in the test part, to decide a claim
LEVEL = 0.95


def detection_file(folder: Path, detector: str) -> Path:
    return Path(folder) / f"detect-{detector}.json"


def read_detection(folder: Path, detector: str, claim_id: str) -> list[Mapping[str, Any]]:
    """The test part's model records of `detector`'s zoo detection file in `folder`; [] when
    the file is not there (the claim then reads no results)."""
    path = detection_file(folder, detector)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchbdError(f"claim {claim_id!r}: {str(path)!r} is not a zoo detection file "
                           f"({exc}); write it again with benchbd zoo --detect") from None
    models = data.get("models") if isinstance(data, Mapping) else None
    if data.get("kind") != "benchbd-zoo-detection" or not isinstance(models, list):
        raise BenchbdError(f"claim {claim_id!r}: {str(path)!r} is not a zoo detection file; "
                           "write it again with benchbd zoo --detect")  # fmt: skip
    rows = [m for m in models if isinstance(m, Mapping) and m.get("part") == "test"]
    for row in rows:
        score = row.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(
                score):  # fmt: skip
            raise BenchbdError(f"claim {claim_id!r}: {str(path)!r} holds a model whose score "
                               f"is not a finite number ({score!r})")  # fmt: skip
    return rows


def auroc(scores: np.ndarray, poisoned: np.ndarray) -> float:
    """The probability that a poisoned model outscores a clean one, ties counting half
    (scikit-learn's roc_auc_score, as the zoo's own metrics take it)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(poisoned, scores))


def auroc_interval(value: float, poisoned: int, clean: int, level: float = LEVEL):
    """Newcombe's method-5 score interval of an AUROC `value` measured on `poisoned` and
    `clean` models: the A in [0, 1] where (value - A)^2 <= z^2 V(A)."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    z2 = norm.ppf(0.5 + level / 2) ** 2
    n_star = (poisoned + clean) / 2 - 1

    def excess(a: float) -> float:
        spread = (2 * n_star - 1) - (3 * n_star - 3) / ((2 - a) * (1 + a))
        variance = max(0.0, a * (1 - a) / (poisoned * clean) * spread)
        return (value - a) ** 2 - z2 * variance

    # Inside the interval at the value itself (or just beside it, where the value is 0 or 1
    # and V vanishes there): the bounds are the roots on either side.
    below, above = max(0.0, min(value, 1 - 1e-9)), min(1.0, max(value, 1e-9))
    low = 0.0 if excess(0.0) <= 0 else brentq(excess, 0.0, below, xtol=1e-12)
    high = 1.0 if excess(1.0) <= 0 else brentq(excess, above, 1.0, xtol=1e-12)
    return float(low), float(high)


def zoo_interval(rows: Sequence[Mapping[str, Any]], metric: str) -> tuple[Interval, int, int]:
    """The metric on the test models `rows` with its score interval, and their poisoned and
    clean counts."""
    poisoned_of = np.array([not r.get("clean", True) for r in rows], dtype=bool)
    poisoned = int(poisoned_of.sum())
    clean = len(rows) - poisoned
    if not poisoned or (metric == "auroc" and not clean):
        return Interval(None, None, None, len(rows)), poisoned, clean
    if metric == "auroc":
        scores = np.array([float(r["score"]) for r in rows])
        value = auroc(scores, poisoned_of)
        low, high = auroc_interval(value, poisoned, clean)
    else:
        from scipy.stats import binomtest

        named = sum(1 for r in rows if not r.get("clean", True)
                    and r.get("named_target_index") is not None
                    and r.get("named_target_index") == r.get("target_index"))  # fmt: skip
        value = named / poisoned
        found = binomtest(named, poisoned).proportion_ci(LEVEL, method="wilson")
        low, high = float(found.low), float(found.high)
    return Interval(value, low, high, len(rows)), poisoned, clean
