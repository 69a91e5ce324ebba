"""Metric definitions on hand-built predictions."""

from __future__ import annotations

import pytest
import torch

from benchbd.engine.evaluate import (
    Metrics,
    attack_success_rate,
    clean_accuracy,
    defense_effectiveness,
    robust_accuracy,
)


def test_asr_counts_only_images_whose_true_class_is_not_the_target():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    target = 2
    predictions = torch.tensor([2, 0, 2, 2, 2, 2])  # images of class 2 must not count
    # 4 non-target images, 3 of them called "2"
    assert attack_success_rate(predictions, labels, target) == pytest.approx(0.75)
    assert robust_accuracy(predictions, labels, target) == pytest.approx(0.25)


def test_asr_undefined_without_non_target_images():
    with pytest.raises(ValueError):
        attack_success_rate(torch.tensor([1, 1]), torch.tensor([1, 1]), 1)


def test_clean_accuracy():
    assert clean_accuracy(torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 1, 1])) == 0.5


def test_der_follows_backdoorbench():
    before = Metrics(ca=0.9, asr=0.95, ra=0.05, n_test=10, n_triggered=9)
    after = Metrics(ca=0.85, asr=0.15, ra=0.7, n_test=10, n_triggered=9)
    assert defense_effectiveness(before, after) == pytest.approx((0.8 - 0.05 + 1) / 2)
    worse = Metrics(ca=0.95, asr=0.99, ra=0.0, n_test=10, n_triggered=9)
    assert defense_effectiveness(before, worse) == pytest.approx(0.5)
    no_trigger = Metrics(ca=0.9, asr=None, ra=None, n_test=10, n_triggered=0)
    assert defense_effectiveness(no_trigger, no_trigger) is None
