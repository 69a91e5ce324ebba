"""What a training loop reports after each optimizer step: a leaf module, so that the plugin
contracts (a defense's progress callback) can name it without importing the training loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StepReport:
    """One optimizer step of a training stage: which step of how many, its loss, its speed."""

    stage: str
    step: int
    total: int
    loss: float
    pairs_per_s: float


ProgressFn = Callable[[StepReport], None]
