"""Detection metrics of a screen against the rows the attack poisoned, on known scores."""

from __future__ import annotations

import numpy as np
import pytest

from benchbd.engine.detection import ROC_POINTS, detection_metrics, tpr_at

POISONED = [3, 7, 11, 19]


def test_scores_that_rank_the_poisoned_rows_first_are_a_perfect_detector():
    scores = np.zeros(100)
    scores[POISONED] = 1.0 + np.arange(4)
    metrics, curve = detection_metrics(scores, POISONED, dropped=POISONED)
    assert metrics["auroc"] == 1.0 and metrics["ap"] == 1.0
    assert metrics["tpr_at_1fpr"] == 1.0 and metrics["tpr_at_5fpr"] == 1.0
    assert metrics["poisons_removed"] == 1.0 and metrics["clean_lost"] == 0.0
    assert metrics["scored"] == 100 and metrics["dropped"] == 4
    assert len(curve["fpr"]) == len(curve["tpr"]) == ROC_POINTS
    assert curve["fpr"][0] == 0.0 and curve["fpr"][-1] == 1.0 and set(curve["tpr"]) == {1.0}


def test_the_same_scores_against_other_rows_are_a_reversed_detector():
    scores = np.zeros(100)
    scores[POISONED] = 1.0
    clean_rows = [i for i in range(100) if i not in POISONED]
    metrics, _ = detection_metrics(-scores, POISONED, dropped=clean_rows[:48])
    assert metrics["auroc"] == 0.0 and metrics["tpr_at_5fpr"] == 0.0
    assert metrics["poisons_removed"] == 0.0 and metrics["clean_lost"] == 0.5


def test_tpr_at_a_false_positive_budget_is_the_best_threshold_within_it():
    # 10 poisoned rows, 100 clean; the 3rd-highest score is clean, the 4th poisoned ...
    truth = np.r_[np.ones(10), np.zeros(100)].astype(bool)
    scores = np.r_[np.linspace(10, 1, 10), np.linspace(0.5, -9, 100)]
    scores[2], scores[12] = scores[12], scores[2]  # one clean row in the top three
    metrics, curve = detection_metrics(scores, np.flatnonzero(truth).tolist(), dropped=[])
    # within 1 % of 100 clean rows (one false positive), every poison is caught but one
    assert metrics["tpr_at_1fpr"] == pytest.approx(0.9)
    from sklearn.metrics import roc_auc_score

    assert metrics["auroc"] == pytest.approx(roc_auc_score(truth, scores))
    assert curve["tpr"] == sorted(curve["tpr"])  # a ROC curve never falls
    assert tpr_at(np.array([0.0, 0.02, 1.0]), np.array([0.5, 0.8, 1.0]), 0.01) == 0.5


def test_without_poisoned_rows_ranking_is_undefined():
    metrics, curve = detection_metrics(np.arange(20.0), [], dropped=[0, 1])
    assert metrics["auroc"] is None and metrics["ap"] is None and curve is None
    assert metrics["poisons_removed"] is None and metrics["clean_lost"] == 0.1
