"""How many pairs each split of a data set holds: what every data source is asked for, and part
of every data set's fingerprint. Its own module, below the sources, so that each source (the
digits, the real ones) and the loader that picks among them can name it."""

from __future__ import annotations

from dataclasses import dataclass

from benchbd.core.checks import check_fields
from benchbd.core.errors import BenchbdError


@dataclass(frozen=True)
class DataSizes:
    """How many pairs each split holds (train: poisoned pretraining; clean: for defenses;
    test: reported on; validation: for choosing defaults, never reported as a result).

    For real sources a size is a cap and 0 means every row available, except validation,
    which is set aside from the labelled rows: at most a tenth of them, and 0 sets none aside.
    The synthetic set is generated to size, so it needs train, clean and test to be at least 1.
    """

    train: int = 20_000
    clean: int = 5_000
    test: int = 2_000
    validation: int = 2_000

    def __post_init__(self) -> None:
        check_fields(self, owner="the split sizes")
        if min(self.train, self.clean, self.test, self.validation) < 0:
            raise BenchbdError("split sizes must be >= 0 (0 = all rows, for real datasets)")
