"""MM-BD (Wang, Xiang, Miller, Kesidis, "MM-BD: Post-Training Detection of Backdoor Attacks with
Arbitrary Backdoor Pattern Types Using a Maximum Margin Statistic", IEEE S&P 2024), on the
zero-shot classifier: the simple, data-free baseline beside DECREE.

A backdoor makes its target class unusually easy to reach: some input drives the target's
logit far above every other class. MM-BD estimates, for each class k, the maximum classification
margin `logit_k(x) - max_{j != k} logit_j(x)` any input reaches, by gradient ascent from random
images (its authors' univ_bd.py: `images` uniform images per class, Adam at lr 1e-2, `steps`
steps, the margin of the best image); the largest margin is tested against a Gamma
distribution fitted to the other classes' margins, p = 1 - F(r_max)^K. The score is -log10 p
(higher = more likely backdoored) and the suspected target is the class of the largest margin.

Here the classifier is CLIP's zero-shot one: the image embedding's cosine with each class's
prompt-averaged text embedding, times the model's logit scale. Every class's images are
optimised in one batch (Adam's update is per pixel, so this is the per-class loop of the
authors' code, without its per-class early stop on a flat loss). It needs no clean data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchbd.api import (
    ClipBundle,
    DetectionContext,
    ModelDetector,
    ModelVerdict,
    Params,
    param,
    zero_shot_weights,
)

SMALLEST_P = 1e-12  # a p-value below this scores as this (a finite score)


@dataclass(frozen=True)
class MMBDParams(Params):
    images: int = param(10, "random images optimised per class (authors: 30)", min=1)
    steps: int = param(100, "Adam steps on the images (authors: 300)", min=1)
    lr: float = param(1e-2, "Adam learning rate on the pixels (authors: 1e-2)", min=0.0)


def margins(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Each row's margin: its class's logit minus the largest other logit."""
    own = logits.gather(1, classes[:, None]).squeeze(1)
    others = logits.scatter(1, classes[:, None], -math.inf)
    return own - others.max(dim=1).values


def gamma_p_value(largest: float, null: np.ndarray) -> float:
    """1 - F(largest)^(len(null) + 1), F the Gamma fitted to `null` (univ_bd.py's test)."""
    from scipy.stats import gamma

    shape, loc, scale = gamma.fit(null)
    return float(1.0 - gamma.cdf(largest, a=shape, loc=loc, scale=scale) ** (len(null) + 1))


class MMBD(ModelDetector):
    Params = MMBDParams
    description = ("Model: the largest zero-shot class margin random images can be driven to, "
                   "against the other classes' (MM-BD).")  # fmt: skip
    test_params = {"images": 2, "steps": 3}

    def detect(self, clip: ClipBundle, context: DetectionContext) -> ModelVerdict:
        p = self.params
        device = next(clip.model.parameters()).device
        n_classes = len(context.task.classnames)
        generator = torch.Generator().manual_seed(context.seed)
        size = clip.image_size
        was_training = clip.model.training
        clip.model.eval()
        with torch.no_grad():
            weights = zero_shot_weights(clip, context.task)
            scale = float(clip.model.logit_scale.exp())
        classes = torch.arange(n_classes).repeat_interleave(p.images).to(device)
        images = torch.rand(len(classes), 3, size, size, generator=generator).to(device)
        images.requires_grad_(True)
        optimizer = torch.optim.Adam([images], lr=p.lr)
        for parameter in clip.model.parameters():
            parameter.requires_grad_(False)
        try:
            for _ in range(p.steps):
                loss = -self.margin_of(clip, images, weights, scale, classes).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                final = self.margin_of(clip, images, weights, scale, classes)
        finally:
            for parameter in clip.model.parameters():
                parameter.requires_grad_(True)
            clip.model.train(was_training)
        per_class = final.view(n_classes, p.images).max(dim=1).values.double().cpu().numpy()
        target = int(per_class.argmax())
        p_value = gamma_p_value(float(per_class[target]), np.delete(per_class, target))
        p_value = p_value if math.isfinite(p_value) else 1.0
        score = -math.log10(max(p_value, SMALLEST_P))
        return ModelVerdict(score, target, {"p_value": p_value,
                                            "margins": [round(float(m), 4) for m in per_class]})

    @staticmethod
    def margin_of(clip, images, weights, scale, classes) -> torch.Tensor:
        features = F.normalize(clip.model.encode_image(
            clip.normalize_float(images.clamp(0.0, 1.0))).float(), dim=-1)
        return margins(scale * features @ weights, classes)
