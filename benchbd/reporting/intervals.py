"""Uncertainty over seeds: the 95 % Student t interval of a mean, and a verdict read from it.

Every mean a table shows and every claim benchbd decides carries this interval, so that a
reader never takes a mean near a threshold for evidence. The t interval (not a bootstrap) is
used because benchbd's cells have 3 to 10 seeds, too few for a bootstrap's percentiles to
mean much; it is exact for normally distributed seeds and says so by widening quickly when n
is small (t = 4.30 at n = 3, 2.78 at n = 5, 2.26 at n = 10).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95  # the confidence level of every interval benchbd prints
METHOD = "Student t, 95 %, over seeds"

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
COMPARISONS = (">=", ">", "<=", "<")


@dataclass(frozen=True)
class Interval:
    """The mean of `n` finite values and its 95 % t interval; `low` and `high` are None when
    n < 2 (one seed says nothing about the spread)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    def text(self, digits: int = 3) -> str:
        if self.mean is None:
            return "-"
        if self.low is None or self.high is None:
            return f"{self.mean:.{digits}f} (n={self.n})"
        low, high = f"{self.low:.{digits}f}", f"{self.high:.{digits}f}"
        return f"{self.mean:.{digits}f} [{low}, {high}] (n={self.n})"


def t_quantile(n: int, level: float = LEVEL) -> float:
    """The two-sided `level` quantile of Student's t with n - 1 degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, n - 1))


def interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The mean of the finite `values` and its t interval (NaN and infinities left out)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(finite)
    if n == 0:
        return Interval(None, None, None, 0)
    mean = math.fsum(finite) / n
    if n < 2:
        return Interval(mean, None, None, n)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1))
    half = t_quantile(n, level) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def verdict(found: Interval, comparison: str, threshold: float) -> str:
    """`holds` when the whole interval satisfies `mean COMPARISON threshold`, `fails` when the
    whole interval violates it, `inconclusive` when it straddles the threshold or has fewer
    than two values."""
    if comparison not in COMPARISONS:
        raise ValueError(f"comparison must be one of {', '.join(COMPARISONS)}, not {comparison!r}")
    if found.low is None or found.high is None:
        return INCONCLUSIVE
    above = comparison in (">=", ">")
    strict = comparison in (">", "<")

    def satisfies(x: float) -> bool:
        if above:
            return x > threshold if strict else x >= threshold
        return x < threshold if strict else x <= threshold

    if satisfies(found.low) and satisfies(found.high):
        return HOLDS
    if not satisfies(found.low) and not satisfies(found.high):
        return FAILS
    return INCONCLUSIVE


def ratio_interval(num: Sequence[float], den: Sequence[float], paired: bool,
                   level: float = LEVEL) -> Interval:  # fmt: skip
    """Fieller's interval for mean(num) / mean(den) (see benchbd.reporting.claims); low and high
    are infinite when the denominator's interval reaches zero, None with fewer than 2 seeds."""
    a_vals = [v for v in num if math.isfinite(v)]
    b_vals = [v for v in den if math.isfinite(v)]
    if paired:
        pairs = [(a, b) for a, b in zip(num, den, strict=True) if math.isfinite(a + b)]
        a_vals, b_vals = [a for a, _ in pairs], [b for _, b in pairs]
    n = min(len(a_vals), len(b_vals))
    if n == 0:
        return Interval(None, None, None, 0)
    m1, m2 = math.fsum(a_vals) / len(a_vals), math.fsum(b_vals) / len(b_vals)
    ratio = m1 / m2 if m2 != 0 else math.copysign(math.inf, m1) if m1 else math.nan
    if n < 2:
        return Interval(ratio, None, None, n)

    def var(xs: list[float], m: float) -> float:
        return math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)

    v11, v22 = var(a_vals, m1), var(b_vals, m2)
    v12 = (math.fsum((a - m1) * (b - m2) for a, b in zip(a_vals, b_vals, strict=True))
           / (n - 1) / n) if paired else 0.0  # fmt: skip
    t2 = t_quantile(n, level) ** 2
    a, b, c = m2 * m2 - t2 * v22, m1 * m2 - t2 * v12, m1 * m1 - t2 * v11
    disc = b * b - a * c
    if a <= 0 or disc < 0:
        return Interval(ratio, -math.inf, math.inf, n)
    root = math.sqrt(disc)
    return Interval(ratio, (b - root) / a, (b + root) / a, n)
