"""RoCLIP (Yang, Mirzasoleiman et al., NeurIPS 2023), a pretraining defense: every K-th epoch
each image is matched, instead of with its own caption, with the caption nearest to it in a
pool of recent captions; every epoch images and captions are augmented.

In a matching epoch the positives of the CLIP loss are the pool's nearest caption embeddings
(held detached, so the text tower learns nothing in those steps): with
p_i = argmax_j <I_i, P_j> over the pool P, the loss is the symmetric cross-entropy of
s * P_p I^T with labels arange(batch), as in the public RoCLIP code (`get_loss` with its memory
bank). A poisoned image's nearest caption in a large, varied pool is rarely its poisoned one,
which breaks the trigger-caption link the attack relies on. Other epochs are plain CLIP loss.
Each step, images get an AutoAugment view and captions an EDA view (benchbd.augment, as
CleanCLIP's defense uses; RoCLIP's `cross_aug`) in place of the originals. The pool is filled
from every step's detached caption embeddings (first in, first out); the public code updates
its bank only in matching epochs and starts it from random vectors, so its first matching steps
match images with noise.

Scaling. The public code's defaults: 24 epochs, matching every 2nd epoch (`break_epoch`), a
pool of 21,845 caption embeddings, batch 512. benchbd pretrains 8 epochs of 20,000 pairs in
batches of 128: matching every 2nd epoch (epochs 2, 4, 6, 8, the same half of training) and a
pool of 2,048 captions: 16 batches, about 10 % of an epoch, where the public pool spans 43
batches (2 % of an epoch of its 1M pairs), so that a pool far smaller than one class's
captions never decides the match. The optimiser, schedule and recipe are the run's pretraining
recipe. Under torchrun the matched loss is over each rank's slice: the defense refuses to run
there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchbd import distributed
from benchbd.augment import ImageViews, TextViews
from benchbd.data.pairs import PairSet
from benchbd.errors import BenchbdError
from benchbd.model import ClipBundle
from benchbd.params import Params, param
from benchbd.plugins import DefenseContext, PretrainingDefense, PretrainingHooks
from benchbd.seeds import substream
from benchbd.train import Batch, clip_loss
from defenses.cleanclip import SYNONYM_SOURCES, resolve_synonyms


@dataclass(frozen=True)
class RoCLIPParams(Params):
    every: int = param(2, "match with the pool's nearest caption every this many epochs", min=1)
    pool: int = param(2048, "caption embeddings the pool keeps (the most recent)", min=1)
    augment: bool = param(True, "AutoAugment images and EDA captions every step")
    synonyms: str = param(
        "auto", "EDA synonym source: auto (WordNet if installed), wordnet, dataset",
        choices=SYNONYM_SOURCES,
    )  # fmt: skip


class CaptionPool:
    """The most recent `size` caption embeddings (detached), first in, first out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.bank: torch.Tensor | None = None

    def push(self, features: torch.Tensor) -> None:
        features = features.detach()
        joined = features if self.bank is None else torch.cat([features, self.bank])
        self.bank = joined[: self.size]

    def nearest(self, queries: torch.Tensor) -> torch.Tensor:
        """For each query, the pool's most similar embedding."""
        assert self.bank is not None
        pool = self.bank.to(queries.dtype)
        return pool[(queries.detach() @ pool.T).argmax(dim=1)]


def matched_loss(image: torch.Tensor, matched: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """RoCLIP's loss: each image against the pool captions matched to the batch's images,
    its own match the positive, both directions."""
    logits = scale * matched @ image.T
    labels = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class RoCLIPObjective:
    """The loss of one step, and the epoch hook that says whether this epoch matches."""

    def __init__(self, params: RoCLIPParams, text_views: TextViews | None, seed: int) -> None:
        self.every = params.every
        self.pool = CaptionPool(params.pool)
        self.image_views = ImageViews() if text_views is not None else None
        self.text_views = text_views
        self.seed = seed
        self.matching = False
        self.matched_steps = 0

    def start_epoch(self, clip: ClipBundle, epoch: int, pairs: PairSet) -> PairSet:
        self.matching = (epoch + 1) % self.every == 0  # 1-based epochs K, 2K, ... match
        return pairs

    def __call__(self, clip: ClipBundle, batch: Batch) -> torch.Tensor:
        device = next(clip.model.parameters()).device
        images, tokens = batch.images, batch.tokens
        if self.text_views is not None:
            step_seed = substream(self.seed, f"roclip-views:{batch.step}")
            images = self.image_views(images, step_seed)
            tokens = clip.tokenize(self.text_views(batch.captions, step_seed))
        out = clip.model(clip.normalize(images.to(device)), tokens.to(device))
        image, text, scale = out["image_features"], out["text_features"], out["logit_scale"]
        if self.matching and self.pool.bank is not None:
            loss = matched_loss(image, self.pool.nearest(image), scale)
            self.matched_steps += 1
        else:
            loss = clip_loss(image, text, scale)
        self.pool.push(text)
        return loss


class RoCLIP(PretrainingDefense):
    description = "Pretraining: match images with the nearest pool caption every K epochs (RoCLIP)."
    Params = RoCLIPParams
    test_params = {"pool": 64}

    def check(self, context: DefenseContext) -> None:
        if distributed.world().size > 1:  # before pretraining, like every check
            raise BenchbdError("roclip's matched loss is not gathered across ranks: run it "
                               "without torchrun")  # fmt: skip

    def pretraining(self, pairs: PairSet, context: DefenseContext) -> PretrainingHooks:
        views = None
        if self.params.augment:
            synonyms, self.synonym_source = resolve_synonyms(self.params.synonyms, context)
            views = TextViews(synonyms)
        self.objective = RoCLIPObjective(self.params, views, context.seed)
        return PretrainingHooks(self.objective, self.objective.start_epoch)

    def report(self) -> dict:
        objective = getattr(self, "objective", None)
        return {"matched_steps": None if objective is None else objective.matched_steps,
                "synonyms": getattr(self, "synonym_source", None)}  # fmt: skip
