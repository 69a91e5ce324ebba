"""The t interval and the verdict every claim and table reads through."""

import math

import pytest

from benchbd.reporting.intervals import FAILS, HOLDS, INCONCLUSIVE, interval, t_quantile, verdict


def test_interval_matches_the_textbook_t_interval():
    values = [0.812, 0.292, 0.488]
    found = interval(values)
    mean = sum(values) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    half = 4.302652729911275 * std / math.sqrt(3)  # t(0.975, 2)
    assert found.n == 3
    assert found.mean == pytest.approx(mean)
    assert (found.low, found.high) == pytest.approx((mean - half, mean + half))


def test_t_quantiles_of_small_samples():
    assert t_quantile(5) == pytest.approx(2.7764451051977987)
    assert t_quantile(10) == pytest.approx(2.2621571627409915)


def test_non_finite_values_are_left_out_and_one_value_has_no_interval():
    found = interval([0.5, float("nan"), float("inf")])
    assert (found.mean, found.low, found.high, found.n) == (0.5, None, None, 1)
    assert interval([]).mean is None


def test_a_mean_above_its_threshold_with_a_straddling_interval_is_inconclusive():
    # the SIG-after-CleanCLIP case: mean 0.531 over seeds 0.812 / 0.292 / 0.488
    assert verdict(interval([0.812, 0.292, 0.488]), ">=", 0.5) == INCONCLUSIVE


def test_verdicts_on_either_side():
    tight = interval([0.10, 0.12, 0.11, 0.13, 0.09])
    assert verdict(tight, "<=", 0.5) == HOLDS
    assert verdict(tight, ">=", 0.5) == FAILS
    assert verdict(interval([0.2]), "<=", 0.5) == INCONCLUSIVE
    with pytest.raises(ValueError):
        verdict(tight, "=", 0.5)
