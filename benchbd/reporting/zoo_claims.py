"""Claims about a model detector over a zoo, decided with an interval over the zoo's models.

A model detector is measured on a zoo (`benchbd zoo --detect NAME`), which writes
`detect-NAME.json`: every model's score, the attack's target and the target the detector
named. A claim with `detector = "NAME"` reads that file in its `folder` and decides one of
ZOO_METRICS on the zoo's test part (the models the split rule keeps for reporting; the
validation part only fixes thresholds):

- `auroc`: the detector's AUROC, poisoned models positive;
- `target_accuracy`: among poisoned models, the share whose named target is the attack's.

The uncertainty is over models, not seeds: the zoo is a sample of models, and a zoo of 40
cannot be rerun five times. The interval is the 95 % percentile interval of a stratified
bootstrap (poisoned and clean models resampled apart, so each resample keeps the zoo's mix),
BOOTSTRAP resamples from a fixed seed, so the interval is the same on every machine. A
bootstrap collapses where every resample gives the same number (an AUROC of 1.0 on perfectly
separated scores), so a zoo claim is decided only when the test part holds at least
DECIDING_MODELS poisoned and DECIDING_MODELS clean models; with fewer it is inconclusive, and
its note says what the interval alone would say, as a claim read on too few seeds.
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
BOOTSTRAP = 2000  # resamples
BOOTSTRAP_SEED = 0
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
    """The probability that a poisoned model outscores a clean one, ties counting half (the
    Mann-Whitney form of the AUROC, which scikit-learn's roc_auc_score equals)."""
    positive, negative = scores[poisoned], scores[~poisoned]
    above = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return float((above + 0.5 * ties) / (len(positive) * len(negative)))


def target_accuracy(named: np.ndarray, poisoned: np.ndarray) -> float:
    return float(named[poisoned].mean())


def zoo_values(rows: Sequence[Mapping[str, Any]], metric: str) -> tuple[float, list[float]]:
    """The metric on the test part, and its BOOTSTRAP resampled values."""
    scores = np.array([float(r["score"]) for r in rows])
    poisoned = np.array([not r.get("clean", True) for r in rows])
    named = np.array([r.get("named_target_index") is not None
                      and r.get("named_target_index") == r.get("target_index")
                      for r in rows])  # fmt: skip
    positive, negative = np.flatnonzero(poisoned), np.flatnonzero(~poisoned)

    def measure(index: np.ndarray) -> float:
        if metric == "auroc":
            return auroc(scores[index], poisoned[index])
        return target_accuracy(named[index], poisoned[index])

    generator = np.random.default_rng(BOOTSTRAP_SEED)
    resampled = []
    for _ in range(BOOTSTRAP):
        index = np.concatenate([generator.choice(positive, len(positive)),
                                generator.choice(negative, len(negative))])  # fmt: skip
        resampled.append(measure(index))
    return measure(np.arange(len(rows))), resampled


def zoo_interval(rows: Sequence[Mapping[str, Any]], metric: str) -> tuple[Interval, int, int]:
    """The metric with its bootstrap interval, and the test part's poisoned and clean counts."""
    poisoned = sum(1 for r in rows if not r.get("clean", True))
    clean = len(rows) - poisoned
    if not poisoned or (metric == "auroc" and not clean):
        return Interval(None, None, None, len(rows)), poisoned, clean
    value, resampled = zoo_values(rows, metric)
    low, high = np.quantile(resampled, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Interval(value, float(low), float(high), len(rows)), poisoned, clean
