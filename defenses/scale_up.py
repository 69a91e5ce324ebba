"""SCALE-UP (Guo et al., ICLR 2023), on CLIP's zero-shot prediction.

A triggered input keeps its prediction when its pixels are amplified; a clean one drifts. The
scaled prediction consistency (SPC) of an input is the share of the scale factors n at which
the prediction of `clip(x * n, 0, 1)` (x in [0, 1]) equals the prediction of x itself; a high
SPC flags a trigger. As BackdoorBox computes it (core/defenses/SCALE_UP.py, `_detect`): scale
set {3, 5, 7, 9, 11}, pixels scaled before the model's normalisation and clipped to [0, 1],
`spc += scale_label == original_pred`, divided by the number of scales.

Deviation (docs/fidelity.md): BackdoorBox's data-limited variant standardises SPC with the mean
and standard deviation of the clean validation images' SPC; that is a monotone map, so it
changes neither AUROC nor which images a threshold fixed on clean validation images rejects,
and the score here is the raw SPC.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from benchbd.defenses.input_scores import as_floats, zero_shot_logits

from benchbd.api import (
    BenchbdError,
    ClipBundle,
    DefenseContext,
    InputDetector,
    Params,
    param,
    zero_shot_weights,
)


@dataclass(frozen=True)
class ScaleUpParams(Params):
    scales: str = param("3,5,7,9,11", "pixel scale factors, comma-separated (BackdoorBox's)")

    def __post_init__(self) -> None:
        super().__post_init__()
        scale_factors(self.scales)


def scale_factors(text: str) -> list[float]:
    """"3,5,7" -> [3.0, 5.0, 7.0]; a BenchbdError for anything else."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise BenchbdError(f"scales must be positive numbers separated by commas, got {text!r}")
    return values


def consistency(original: torch.Tensor, scaled: torch.Tensor) -> torch.Tensor:
    """(B,) predictions and (S, B) predictions of the scaled images -> (B,) SPC."""
    return (scaled == original[None]).double().mean(dim=0)


class ScaleUp(InputDetector):
    Params = ScaleUpParams
    description = ("Input detection: amplify the input's pixels; a zero-shot prediction that "
                   "stays the same flags a trigger (SCALE-UP).")  # fmt: skip

    def fit(self, clip: ClipBundle, context: DefenseContext) -> None:
        self.weights = zero_shot_weights(clip, context.task)
        self.scales = scale_factors(self.params.scales)

    def score(self, clip: ClipBundle, images: torch.Tensor,
              context: DefenseContext) -> torch.Tensor:  # fmt: skip
        floats = as_floats(images)
        original = zero_shot_logits(clip, floats, self.weights).argmax(dim=1)
        scaled = torch.stack([
            zero_shot_logits(clip, (floats * n).clamp(0.0, 1.0), self.weights).argmax(dim=1)
            for n in self.scales])  # fmt: skip
        return consistency(original, scaled)
