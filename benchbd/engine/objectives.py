"""The CLIP loss plus in-modal (self-supervised) terms, for any stage of the one training loop.

    loss = clip_weight * L_clip(I, T)
         + inmodal_weight * 1/2 [CE(s * I Ia^T) + CE(s * T Ta^T)]

Ia is an AutoAugment view of each image, Ta an EDA view of each caption, both drawn anew every
step (`engine.augment`); s is the model's logit scale and the labels are arange(batch). Under
torchrun both terms are over the global batch (features and views gathered across ranks).

Two stages use it. CleanCLIP (`defenses/cleanclip.py`) finetunes with it on clean pairs. And the
poisoned model may be pretrained with it (`TrainConfig.inmodal_weight`): Verma et al.
("Effective Backdoor Mitigation Depends on the Pre-training Objective") pretrain with the CLIP
loss plus these terms at weight 1 each, with the same views, and find CleanCLIP far weaker
against a model pretrained that way. The engine owns the loss so that pretraining never
imports a defense.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchbd.core.seeds import substream
from benchbd.engine import distributed
from benchbd.engine.augment import ImageViews, TextViews, table_synonyms
from benchbd.engine.data.pairs import ZeroShotTask
from benchbd.engine.model import ClipBundle
from benchbd.engine.train import Batch, Objective, TrainConfig, clip_loss, contrastive_objective


def inmodal_loss(
    features: torch.Tensor, views: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """InfoNCE between each item and its augmented view (features L2-normalised). Under
    torchrun, over the global batch like the CLIP term: a rank's slice alone would give each
    item fewer negatives than one process on the same batch."""
    if distributed.world().size > 1:
        features, views = distributed.gathered_with_grad(features, views)
    logits = logit_scale * features @ views.T
    return F.cross_entropy(logits, torch.arange(len(features), device=features.device))


def clip_inmodal_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    image_views: torch.Tensor | None,
    text_views: torch.Tensor | None,
    logit_scale: torch.Tensor,
    clip_weight: float,
    inmodal_weight: float,
) -> torch.Tensor:
    """clip_weight * L_clip + inmodal_weight * (L_image-image + L_text-text) / 2; a zero
    weight drops its term entirely (and its views may then be None)."""
    loss = torch.zeros((), device=image.device)
    if clip_weight > 0:
        loss = loss + clip_weight * clip_loss(image, text, logit_scale)
    if inmodal_weight > 0:
        inmodal = (inmodal_loss(image, image_views, logit_scale)
                   + inmodal_loss(text, text_views, logit_scale)) / 2  # fmt: skip
        loss = loss + inmodal_weight * inmodal
    return loss


class ClipInModalObjective:
    """`clip_inmodal_loss` over a batch: the views go through the model in the same forward
    pass as the batch; skips them when the in-modal weight is 0. Each step's views are drawn
    from the substream `views:<step>` of `seed`."""

    def __init__(self, clip_weight: float, inmodal_weight: float, text_views: TextViews,
                 seed: int) -> None:  # fmt: skip
        self.clip_weight = clip_weight
        self.inmodal_weight = inmodal_weight
        self.image_views = ImageViews()
        self.text_views = text_views
        self.seed = seed

    def __call__(self, clip: ClipBundle, batch: Batch) -> torch.Tensor:
        device = next(clip.model.parameters()).device
        images, tokens = batch.images, batch.tokens
        n = len(images)
        if self.inmodal_weight > 0:
            step_seed = substream(self.seed, f"views:{batch.step}")
            views = self.image_views(images, step_seed)
            captions = self.text_views(batch.captions, step_seed)
            images = torch.cat([images, views])
            tokens = torch.cat([tokens, clip.tokenize(captions)])
        out = clip.model(clip.normalize(images.to(device)), tokens.to(device))
        image, text, scale = out["image_features"], out["text_features"], out["logit_scale"]
        views = self.inmodal_weight > 0
        return clip_inmodal_loss(image[:n], text[:n], image[n:] if views else None,
                                 text[n:] if views else None, scale, self.clip_weight,
                                 self.inmodal_weight)  # fmt: skip


def pretraining_objective(recipe: TrainConfig, task: ZeroShotTask, seed: int) -> Objective:
    """What a stage trained with `recipe` minimises: the CLIP loss alone when its
    `inmodal_weight` is 0 (the same function as always, so those runs are unchanged), else
    the CLIP loss at weight 1 plus the in-modal terms at `inmodal_weight`. `seed` is the
    stage's training seed. The captions' EDA synonyms come from the dataset's own table, never
    from WordNet: whether nltk is installed is not part of a fingerprint, and the cached
    model must be a function of what is."""
    if recipe.inmodal_weight == 0:
        return contrastive_objective
    views = TextViews(table_synonyms(task.synonym_groups))
    return ClipInModalObjective(1.0, recipe.inmodal_weight, views, seed)
