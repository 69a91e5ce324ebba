"""CleanCLIP (Bansal et al., ICCV 2023): finetune on clean pairs with the CLIP loss plus an
in-modal term that makes each image (and caption) agree with its own augmented view.

    loss = clip_weight * L_clip(I, T)
         + inmodal_weight * 1/2 [CE(s * I Ia^T) + CE(s * T Ta^T)]

Ia is an AutoAugment view of each image, Ta an EDA view of each caption, both drawn anew every
step; s is the model's logit scale and the labels are arange(batch). Under torchrun both terms
are over the global batch (features and views gathered across ranks). The in-modal term forces
each modality to be learned on its own, which breaks the spurious trigger-caption shortcut.
`finetune` (inmodal_weight = 0) and `inmodal` (clip_weight = 0) are this recipe with one term.
The loss is the engine's (`engine.objectives`), which a poisoned model may be pretrained with.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch

from benchbd.api import (
    BenchbdError,
    ClipBundle,
    ClipInModalObjective,
    Defense,
    DefenseContext,
    Params,
    TextViews,
    TrainConfig,
    clip_inmodal_loss,
    param,
    scale_epochs,
    table_synonyms,
    train,
    wordnet_synonyms,
)
from benchbd.api import inmodal_loss as inmodal_loss  # re-exported for SafeCLIP

SYNONYM_SOURCES = ("auto", "wordnet", "dataset")


@dataclass(frozen=True)
class FinetuneParams(Params):
    """The finetuning recipe every CleanCLIP-style defense shares."""

    clean_pairs: int = param(5000, "clean pairs to finetune on (0 = all available)", min=0)
    epochs: float = param(5.0, "passes over the clean pairs", min=0.01)
    lr: float = param(5e-4, "peak learning rate", min=0.0)
    batch_size: int = param(128, "pairs per batch", min=2)
    weight_decay: float = param(0.1, "AdamW weight decay (none on biases, norms, scale)", min=0.0)
    warmup_steps: int = param(20, "linear warmup steps before the cosine", min=0)

    def train_config(self) -> TrainConfig:
        return TrainConfig.from_recipe(self)

    def scaled_to(self, clean_pairs: int, given: Collection[str]) -> FinetuneParams:
        """Epochs left unset are raised on a small clean set to the steps the recipe takes on
        its reference 5,000 pairs (195 at batch 128): see `benchbd.core.params.scale_epochs`."""
        return scale_epochs(self, clean_pairs, "clean_pairs", given)


def check_batch(available: int, batch_size: int, what: str = "clean pairs") -> None:
    """A finetuning defense needs at least one full batch (contrastive batches stay full)."""
    if available < batch_size:
        raise BenchbdError(
            f"the defense has {available} {what}, fewer than one batch of {batch_size}: "
            "give more clean pairs (--clean-pairs) or a smaller defense batch_size"
        )


def clean_subset(context: DefenseContext, size: int):
    """The first `size` clean pairs (all when size is 0 or larger than the set)."""
    pairs = context.clean
    if 0 < size < len(pairs):
        pairs = pairs.subset(torch.arange(size))
    return pairs


@dataclass(frozen=True)
class CleanCLIPParams(FinetuneParams):
    clip_weight: float = param(1.0, "weight of the multimodal CLIP loss", min=0.0)
    inmodal_weight: float = param(1.0, "weight of the in-modal (self-supervised) loss", min=0.0)
    synonyms: str = param(
        "auto", "EDA synonym source: auto (WordNet if installed), wordnet, dataset",
        choices=SYNONYM_SOURCES,
    )  # fmt: skip


# The loss and its objective live in the engine, which pretrains with them too
# (`TrainConfig.inmodal_weight`); CleanCLIP is that loss on clean pairs.
cleanclip_loss = clip_inmodal_loss
CleanCLIPObjective = ClipInModalObjective


def resolve_synonyms(choice: str, context: DefenseContext):
    """(synonym function, its source's name); the dataset's table is always available."""
    if choice in ("auto", "wordnet"):
        found = wordnet_synonyms()
        if found is not None:
            return found, "wordnet"
        if choice == "wordnet":
            raise BenchbdError("synonyms=wordnet needs nltk with its wordnet data installed")
    return table_synonyms(context.task.synonym_groups), "dataset"


class CleanCLIP(Defense):
    description = "CleanCLIP: CLIP loss + in-modal self-supervision on clean pairs."
    Params = CleanCLIPParams
    test_params = {"epochs": 1.0, "batch_size": 32, "clean_pairs": 64}

    def weights(self) -> tuple[float, float]:
        return self.params.clip_weight, self.params.inmodal_weight

    def check(self, context: DefenseContext) -> None:
        check_batch(len(clean_subset(context, self.params.clean_pairs)), self.params.batch_size)

    def apply(self, clip: ClipBundle, context: DefenseContext) -> ClipBundle:
        clip_weight, inmodal_weight = self.weights()
        synonyms, source = resolve_synonyms(getattr(self.params, "synonyms", "dataset"), context)
        self.synonym_source = source if inmodal_weight > 0 else None
        objective = CleanCLIPObjective(clip_weight, inmodal_weight, TextViews(synonyms),
                                       context.seed)  # fmt: skip
        pairs = clean_subset(context, self.params.clean_pairs)
        train(clip, pairs, self.params.train_config(), seed=context.seed, objective=objective,
              stage="defense", progress=context.progress)  # fmt: skip
        return clip

    def report(self) -> dict:
        return {"synonyms": getattr(self, "synonym_source", None)}


@dataclass(frozen=True)
class InModalParams(FinetuneParams):
    synonyms: str = param(
        "auto", "EDA synonym source: auto (WordNet if installed), wordnet, dataset",
        choices=SYNONYM_SOURCES,
    )  # fmt: skip


class InModal(CleanCLIP):
    description = "CleanCLIP's in-modal term alone (clip_weight = 0)."
    Params = InModalParams

    def weights(self) -> tuple[float, float]:
        return 0.0, 1.0
