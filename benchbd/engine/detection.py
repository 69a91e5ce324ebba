"""How well a screening defense found the poisoned training pairs.

A screen scores every training pair (higher = more suspicious) and drops some rows; the attack
recorded which rows it poisoned. From the two: the area under the ROC curve and the average
precision of the scores (scikit-learn's `roc_auc_score`, `average_precision_score`), the true
positive rate at 1 % and 5 % false positives (from `roc_curve`), and what the drop did: the
fraction of the poisoned rows removed and the fraction of the clean rows lost. The ROC curve is
kept downsampled to a fixed grid of false-positive rates, so a result file can draw it without
holding one score per pair. The metrics' directions are declared with the others
(`benchbd.core.results.HIGHER_IS_BETTER`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ROC_POINTS = 101  # false-positive rates 0, 0.01, ..., 1 at which the ROC curve is kept


def poisoned_mask(n_rows: int, poisoned: Sequence[int]) -> np.ndarray:
    """A boolean per training row: whether the attack poisoned it."""
    mask = np.zeros(n_rows, dtype=bool)
    mask[np.asarray(list(poisoned), dtype=np.int64)] = True
    return mask


def tpr_at(fpr: np.ndarray, tpr: np.ndarray, budget: float) -> float:
    """The highest true-positive rate a threshold reaches without exceeding `budget` false
    positives: a defender who may lose that share of clean pairs catches this share of poisons."""
    return float(tpr[fpr <= budget + 1e-12].max())


def roc_on_grid(fpr: np.ndarray, tpr: np.ndarray, points: int = ROC_POINTS) -> list[float]:
    """The ROC curve's TPR at `points` evenly spaced false-positive rates (the step function
    `tpr_at` of each), rounded for the result file."""
    grid = np.linspace(0.0, 1.0, points)
    return [round(tpr_at(fpr, tpr, float(x)), 6) for x in grid]


def detection_metrics(
    scores: Sequence[float] | np.ndarray, poisoned: Sequence[int], dropped: Sequence[int]
) -> tuple[dict[str, Any], dict[str, list[float]] | None]:
    """(metrics, ROC curve) of a screen's `scores` (one per training row) against the rows the
    attack `poisoned`, and of the rows the screen `dropped`.

    Ranking metrics need both kinds of rows: with no poisoned row (a no-attack run) or no clean
    one they are None, and so is the curve. The drop's fractions are None when there is nothing
    of their kind to count."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    values = np.asarray(scores, dtype=np.float64)
    truth = poisoned_mask(len(values), poisoned)
    removed = np.zeros(len(values), dtype=bool)
    removed[np.asarray(list(dropped), dtype=np.int64)] = True
    n_poisoned, n_clean = int(truth.sum()), int((~truth).sum())
    metrics: dict[str, Any] = {
        "scored": len(values),
        "dropped": int(removed.sum()),
        "poisons_removed": float(removed[truth].mean()) if n_poisoned else None,
        "clean_lost": float(removed[~truth].mean()) if n_clean else None,
    }
    if not n_poisoned or not n_clean:
        return {**metrics, **dict.fromkeys(("auroc", "ap", "tpr_at_1fpr", "tpr_at_5fpr"))}, None
    fpr, tpr, _ = roc_curve(truth, values)
    metrics.update(
        auroc=float(roc_auc_score(truth, values)),
        ap=float(average_precision_score(truth, values)),
        tpr_at_1fpr=tpr_at(fpr, tpr, 0.01),
        tpr_at_5fpr=tpr_at(fpr, tpr, 0.05),
    )
    curve = {"fpr": [round(x, 2) for x in np.linspace(0.0, 1.0, ROC_POINTS)],
             "tpr": roc_on_grid(fpr, tpr)}  # fmt: skip
    return metrics, curve
