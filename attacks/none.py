"""The no-attack baseline: trains on clean pairs, so CA has a reference and ASR is undefined."""

from __future__ import annotations

import torch

from benchbd.api import Attack, PairSet, Poisoned


class NoAttack(Attack):
    description = "No poisoning: the clean-model baseline (ASR not measured)."
    poisons = False
    baseline = True

    def poison(self, pairs: PairSet) -> Poisoned:
        return Poisoned(pairs, [])

    def apply_trigger(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return images.clone()
