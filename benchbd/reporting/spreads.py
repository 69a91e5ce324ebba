"""A table cell: one metric of one row over its seeds, with its 95 % interval.

Every mean a table, a plot or the site shows carries the number of seeds it averages and the
95 % Student t interval of reporting.intervals (the same numbers `interval(values)` gives), so a
reader never takes a mean of three noisy seeds for a measurement. The standard deviation is
kept beside them for the CSV and for older readers.

pandas is imported on first use, not with this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from benchbd.reporting.intervals import LEVEL, METHOD

if TYPE_CHECKING:
    import pandas as pd

CAPTION = (f"Each number is the mean over seeds and its 95 % interval [low, high] ({METHOD}); "
           "one seed has no interval; (n=K) where a metric has fewer finite values than the "
           "row has seeds.")  # fmt: skip


@dataclass(frozen=True)
class SeedSpread:
    """One metric of one row, over its seeds: mean, standard deviation (0 for a single seed),
    the 95 % t interval (`low`, `high`: None under two values) and `n`, the finite values
    averaged; mean None if there are none. `nonfinite` counts NaN or infinite values left out.
    What a table cell shows, as `text()`."""

    mean: float | None
    std: float | None
    nonfinite: int = 0
    low: float | None = None
    high: float | None = None
    n: int = 0

    def text(self, seeds: int | None = None) -> str:
        """'0.024 [0.019, 0.029]'; '0.999' for one value; ' (n=2)' added when the row has
        more seeds (`seeds`) than this metric has finite values."""
        if self.mean is None:
            return "nan" if self.nonfinite else "-"
        text = f"{self.mean:.3f}"
        if self.low is not None and self.high is not None:
            text += f" [{self.low:.3f}, {self.high:.3f}]"
        if seeds is not None and 0 < self.n < seeds:
            text += f" (n={self.n})"
        return f"{text} ({self.nonfinite} nan)" if self.nonfinite else text

    @property
    def half_width(self) -> float:
        """Half the interval's width (0 without one): a plot's error bar."""
        if self.mean is None or self.low is None or self.high is None:
            return 0.0
        return (self.high - self.low) / 2


def over_seeds(values: pd.DataFrame, row_of: pd.Series) -> dict[str, pd.DataFrame]:
    """Each metric over each row's results: mean, standard deviation and count of the finite
    values, how many were not finite, and the t interval's half width (NaN under two
    values)."""
    import numpy as np
    from scipy.stats import t

    finite = values.where(np.isfinite(values)).groupby(row_of)
    mean, std, count = finite.mean(), finite.std(ddof=1), finite.count()
    counts = count.to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        quantile = np.where(counts >= 2, t.ppf(0.5 + LEVEL / 2, np.maximum(counts - 1, 1)),
                            np.nan)  # fmt: skip
        half = quantile * std.to_numpy() / np.sqrt(counts)
    return {"mean": mean, "std": std, "count": count,
            "half": mean.__class__(half, index=mean.index, columns=mean.columns),
            "nonfinite": np.isinf(values).groupby(row_of).sum()}  # fmt: skip


def spreads(stats: dict[str, pd.DataFrame]) -> dict[int, dict[str, SeedSpread]]:
    """Each row's SeedSpread of each metric, from `over_seeds`."""
    keys = list(stats["mean"].columns)
    parts = ("mean", "std", "count", "nonfinite", "half")
    made = {}
    for row, *columns in zip(stats["mean"].index,
                             *(stats[part].to_numpy().tolist() for part in parts),
                             strict=True):  # fmt: skip
        cells = {}
        for key, m, s, c, b, h in zip(keys, *columns, strict=True):
            if not c:
                cells[key] = SeedSpread(None, None, int(b))
            elif c < 2:  # one seed: no spread, no interval
                cells[key] = SeedSpread(m, 0.0, int(b), n=int(c))
            else:
                cells[key] = SeedSpread(m, s, int(b), m - h, m + h, int(c))
        made[row] = cells
    return made
