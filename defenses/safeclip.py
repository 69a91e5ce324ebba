"""SafeCLIP (Yang et al., ICML 2024), a pretraining defense: warm up on in-modal losses only, so
that each tower learns its modality before any image is tied to any caption; then tie only the
pairs that look safe, and grow that set epoch by epoch.

Schedule, in benchbd's one training loop (an epoch hook decides, the objective applies):

1. `inmodal_epochs`: CleanCLIP's in-modal loss on every pair (each image against its
   AutoAugment view, each caption against its EDA view; `defenses.cleanclip.inmodal_loss`).
2. `clip_epochs`: the CLIP loss on every pair.
3. Every later epoch starts by embedding all pairs with the model as trained so far and
   fitting a two-component `GaussianMixture` (scikit-learn) on their image-caption cosine
   similarities. LOW similarity is risky: a poisoned pair (an image of one class captioned
   with another) is mismatched before the model learns it. At the first such epoch the safe
   set is every pair whose posterior of the high-similarity component is at least
   `safe_probability` (0.9, as in the public code), or the `start` share of the pairs most
   probably safe where that is more; each later epoch it is the `fraction` of pairs most
   probably safe, where `fraction` grows by `growth` a epoch up to `cap`. Safe pairs in a
   batch get the CLIP loss among themselves, the rest the in-modal loss; each term is
   weighted by its share of the batch.

The public code trains the two subsets one after the other in each epoch with their own
learning rates (and a low one in the CLIP warmup); here they share the batch and the run's one
warmup-plus-cosine schedule, so the defense changes what each step optimises and nothing else.

Scaling. The public code's schedule is a few in-modal warmup epochs and one CLIP warmup epoch
before the split epochs, its first safe set the pairs with posterior 0.9 or more; its growth
per epoch and cap are settings. benchbd pretrains 8 epochs of 20,000 pairs in batches of 128:
1 in-modal epoch, 1 CLIP epoch, then 6 split epochs; growth 0.1 of the pairs a epoch, capped at
0.9 (so at least a tenth of the pairs, the least safe, never get the CLIP loss). `start` is the
public development code's other rule (`filter_ratio` 0.5: the first safe set is half of the
pairs, there ranked by similarity, here by the mixture's posterior as every split is): where
the mixture puts no pair at posterior 0.9 (as on the embedded data, where one and a half
epochs leave the similarities one broad mode), the first split epoch would otherwise train no
pair with the CLIP loss; the embedded stages grid runs `start=0.5`, chosen on the validation
split (results/validation/safeclip/). Under torchrun each rank's safe and risky rows differ in
number, which gathered losses cannot take: the defense refuses to run there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchbd import distributed
from benchbd.augment import ImageViews, TextViews
from benchbd.data.pairs import PairSet
from benchbd.errors import BenchbdError
from benchbd.model import ClipBundle
from benchbd.params import Params, param
from benchbd.plugins import DefenseContext, PretrainingDefense, PretrainingHooks
from benchbd.seeds import substream
from benchbd.train import Batch, clip_loss
from defenses.cleanclip import SYNONYM_SOURCES, inmodal_loss, resolve_synonyms
from defenses.cosine_gmm import high_component_probability, pair_similarities


@dataclass(frozen=True)
class SafeCLIPParams(Params):
    inmodal_epochs: int = param(1, "warmup epochs with the in-modal loss only", min=0)
    clip_epochs: int = param(1, "then epochs with the CLIP loss on every pair", min=0)
    safe_probability: float = param(
        0.9, "first safe set: posterior of the high-similarity component at least this",
        min=0.0, max=1.0,
    )  # fmt: skip
    start: float = param(
        0.0, "smallest first safe set, a share of the pairs (the mixture's share when larger)",
        min=0.0, max=1.0, recorded_at_default=False,
    )  # fmt: skip
    growth: float = param(0.1, "share of the pairs the safe set grows by each epoch", min=0.0)
    cap: float = param(0.9, "largest share of the pairs in the safe set", min=0.0, max=1.0)
    synonyms: str = param(
        "auto", "EDA synonym source: auto (WordNet if installed), wordnet, dataset",
        choices=SYNONYM_SOURCES,
    )  # fmt: skip


class SafeSchedule:
    """Which rows are safe at each split epoch, from the pairs' similarities that epoch."""

    def __init__(self, params: SafeCLIPParams, seed: int) -> None:
        self.params = params
        self.seed = seed
        self.fraction: float | None = None
        self.shares: list[float] = []

    def next_safe(self, similarities: np.ndarray, epoch: int) -> torch.Tensor:
        """One flag per row: the `fraction` of the pairs most probably safe this epoch (the
        mixture's posterior of its high-similarity component, fitted anew each epoch)."""
        probability = high_component_probability(
            similarities, substream(self.seed, f"safeclip-gmm:{epoch}")
        )
        if self.fraction is None:
            mixture_share = float((probability >= self.params.safe_probability).mean())
            self.fraction = max(mixture_share, self.params.start)
        else:
            self.fraction = min(self.fraction + self.params.growth, self.params.cap)
        safe = torch.zeros(len(similarities), dtype=torch.bool)
        count = int(self.fraction * len(similarities))
        safe[torch.from_numpy(np.argsort(-probability, kind="stable")[:count].copy())] = True
        self.shares.append(round(float(safe.float().mean()), 4))
        return safe


class SafeCLIPObjective:
    """Which loss each row gets this epoch (set by `start_epoch`), and the step's loss."""

    def __init__(self, params: SafeCLIPParams, text_views: TextViews, seed: int) -> None:
        self.params = params
        self.image_views = ImageViews()
        self.text_views = text_views
        self.seed = seed
        self.phase = "inmodal"
        self.safe: torch.Tensor | None = None  # one flag per row, in the split epochs
        self.schedule = SafeSchedule(params, seed)

    def start_epoch(self, clip: ClipBundle, epoch: int, pairs: PairSet) -> PairSet:
        warmup = self.params.inmodal_epochs
        if epoch < warmup:
            self.phase = "inmodal"
        elif epoch < warmup + self.params.clip_epochs:
            self.phase = "clip"
        else:
            self.phase = "split"
            self.safe = self.schedule.next_safe(pair_similarities(clip, pairs), epoch)
        return pairs

    def __call__(self, clip: ClipBundle, batch: Batch) -> torch.Tensor:
        if self.phase == "split":
            assert self.safe is not None and batch.rows is not None
            safe = self.safe[batch.rows]
        else:
            safe = torch.full((len(batch.images),), self.phase == "clip")
        device = next(clip.model.parameters()).device
        risky = ~safe
        images, tokens = batch.images, batch.tokens
        if risky.any():  # views of the rows that get the in-modal loss
            step_seed = substream(self.seed, f"safeclip-views:{batch.step}")
            views = self.image_views(batch.images[risky], step_seed)
            captions = [c for c, r in zip(batch.captions, risky.tolist(), strict=True) if r]
            images = torch.cat([images, views])
            tokens = torch.cat([tokens, clip.tokenize(self.text_views(captions, step_seed))])
        out = clip.model(clip.normalize(images.to(device)), tokens.to(device))
        image, text, scale = out["image_features"], out["text_features"], out["logit_scale"]
        n = len(batch.images)
        safe, risky = safe.to(device), risky.to(device)
        loss = 0 * scale  # a batch with no term still backpropagates (to nothing)
        if int(safe.sum()) >= 2:  # a contrastive term needs a negative
            loss = loss + safe.float().mean() * clip_loss(image[:n][safe], text[:n][safe], scale)
        if int(risky.sum()) >= 2:
            inmodal = (inmodal_loss(image[:n][risky], image[n:], scale)
                       + inmodal_loss(text[:n][risky], text[n:], scale)) / 2  # fmt: skip
            loss = loss + risky.float().mean() * inmodal
        return loss


class SafeCLIP(PretrainingDefense):
    description = ("Pretraining: in-modal warmup, then the CLIP loss only on pairs a GMM on "
                   "similarity deems safe (SafeCLIP).")  # fmt: skip
    Params = SafeCLIPParams
    test_params = {"inmodal_epochs": 1, "clip_epochs": 0}

    def check(self, context: DefenseContext) -> None:
        if distributed.world().size > 1:  # before pretraining, like every check
            raise BenchbdError("safeclip's split losses are not gathered across ranks: run it "
                               "without torchrun")  # fmt: skip

    def pretraining(self, pairs: PairSet, context: DefenseContext) -> PretrainingHooks:
        synonyms, self.synonym_source = resolve_synonyms(self.params.synonyms, context)
        self.objective = SafeCLIPObjective(self.params, TextViews(synonyms), context.seed)
        return PretrainingHooks(self.objective, self.objective.start_epoch)

    def report(self) -> dict:
        objective = getattr(self, "objective", None)
        return {"safe_fractions": None if objective is None else objective.schedule.shares,
                "synonyms": getattr(self, "synonym_source", None)}  # fmt: skip
