"""Plain contrastive finetuning on clean pairs: the baseline every CLIP defense must beat.

It is the CleanCLIP recipe without the in-modal term (CleanCLIP's paper shows that this
alone barely weakens a backdoor).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchbd.model import ClipBundle
from benchbd.params import Params, param
from benchbd.plugins import Defense, DefenseContext
from benchbd.train import TrainConfig, contrastive_objective, train


@dataclass(frozen=True)
class FinetuneParams(Params):
    clean_pairs: int = param(5000, "clean pairs to finetune on (0 = all available)", min=0)
    epochs: float = param(5.0, "passes over the clean pairs", min=0.01)
    lr: float = param(5e-4, "peak learning rate", min=0.0)
    batch_size: int = param(128, "pairs per batch", min=2)
    weight_decay: float = param(0.1, "AdamW weight decay (none on biases, norms, scale)", min=0.0)
    warmup_steps: int = param(20, "linear warmup steps before the cosine", min=0)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
        )


def clean_subset(context: DefenseContext, size: int):
    """The first `size` clean pairs (all when size is 0 or larger than the set)."""
    pairs = context.clean
    if 0 < size < len(pairs):
        pairs = pairs.subset(torch.arange(size))
    return pairs


class Finetune(Defense):
    description = "Contrastive finetuning on clean pairs (CleanCLIP recipe, no in-modal term)."
    Params = FinetuneParams

    def apply(self, clip: ClipBundle, context: DefenseContext) -> ClipBundle:
        pairs = clean_subset(context, self.params.clean_pairs)
        train(
            clip,
            pairs,
            self.params.train_config(),
            seed=context.seed,
            objective=contrastive_objective,
            stage="defense",
            progress=context.progress,
        )
        return clip
