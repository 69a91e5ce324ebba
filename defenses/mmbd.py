"""MM-BD (Wang, Xiang, Miller, Kesidis, "MM-BD: Post-Training Detection of Backdoor Attacks with
Arbitrary Backdoor Pattern Types Using a Maximum Margin Statistic", IEEE S&P 2024), on the
zero-shot classifier: the simple, data-free baseline beside DECREE.

A backdoor makes its target class unusually easy to reach: some input drives the target's
logit far above every other class. MM-BD estimates, for each class k, the maximum classification
margin `logit_k(x) - max_{j != k} logit_j(x)` any input reaches, by gradient ascent from random
images (its authors' univ_bd.py: `images` uniform images per class, plain SGD at lr 1e-2 for
at most `steps` steps, a class stopping early when its loss settles, the margin of its best
image); the largest margin is tested against a Gamma
distribution fitted to the other classes' margins, p = 1 - F(r_max)^K. The score is -log10 p
(higher = more likely backdoored) and the suspected target is the class of the largest margin.

Here the classifier is CLIP's zero-shot one: the image embedding's cosine with each class's
prompt-averaged text embedding, times the model's logit scale. Every class's images are
optimised in one batch (each class's loss involves only its own images, so this is the
authors' per-class loop, its early stop per class included). Scaled: 10 images per class and
100 steps at most (the authors: 30 and 300). It needs no clean data.
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
RELATIVE_CHANGE = 1e-5  # a class stops when its loss changes by less than this, relatively


@dataclass(frozen=True)
class MMBDParams(Params):
    images: int = param(10, "random images optimised per class (authors: 30)", min=1)
    steps: int = param(100, "gradient steps on the images at most (authors: 300)", min=1)
    lr: float = param(1e-2, "SGD learning rate on the pixels (authors: 1e-2)", min=0.0)


def margins(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Each row's margin: its class's logit minus the largest other logit."""
    own = logits.gather(1, classes[:, None]).squeeze(1)
    others = logits.scatter(1, classes[:, None], -math.inf)
    return own - others.max(dim=1).values


def gamma_p_value(largest: float, null: np.ndarray) -> float:
    """1 - F(largest)^(len(null) + 1), F the Gamma fitted to `null` (univ_bd.py's test)."""
    from scipy.stats import gamma

    shape, loc, scale = gamma.fit(null)
    p_value = float(1.0 - gamma.cdf(largest, a=shape, loc=loc, scale=scale) ** (len(null) + 1))
    return p_value if math.isfinite(p_value) else 1.0  # a degenerate fit says nothing


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
        was_training = clip.model.training
        clip.model.eval()
        with torch.no_grad():
            weights = zero_shot_weights(clip, context.task)
            scale = float(clip.model.logit_scale.exp())
        classes = torch.arange(n_classes).repeat_interleave(p.images).to(device)
        size = clip.image_size
        images = torch.rand(len(classes), 3, size, size, generator=generator).to(device)
        for parameter in clip.model.parameters():
            parameter.requires_grad_(False)
        try:
            per_class, steps = self.ascend(clip, images, weights, scale, classes, n_classes)
        finally:
            for parameter in clip.model.parameters():
                parameter.requires_grad_(True)
            clip.model.train(was_training)
        target = int(per_class.argmax())
        p_value = gamma_p_value(float(per_class[target]), np.delete(per_class, target))
        score = -math.log10(max(p_value, SMALLEST_P))
        return ModelVerdict(score, target, {"p_value": p_value, "steps": steps,
                                            "margins": [round(float(m), 6) for m in per_class]})

    def ascend(self, clip, images, weights, scale, classes, n_classes):
        """univ_bd.py's loop for every class at once: plain SGD on the pixels (its SGD is made
        anew each step, so its momentum never acts), a class stopping when its summed loss
        changes by less than 1e-5 relatively; each class's margins are those of its last
        forward pass. Returns (the largest margin per class, steps of the longest class)."""
        p = self.params
        active = torch.ones(n_classes, dtype=torch.bool)
        last = torch.full((n_classes,), 1000.0, dtype=torch.float64)
        final = torch.zeros(len(classes), dtype=torch.float64)
        steps = 0
        for _ in range(p.steps):
            images.requires_grad_(True)
            current = self.margin_of(clip, images, weights, scale, classes)
            losses = -current.view(n_classes, p.images).sum(dim=1)
            (grad,) = torch.autograd.grad(losses[active.to(losses.device)].sum(), images)
            rows = active.repeat_interleave(p.images).to(images.device)
            with torch.no_grad():
                images = images - p.lr * grad * rows.view(-1, 1, 1, 1)
            final[rows.cpu()] = current.detach().double().cpu()[rows.cpu()]
            steps += 1
            values = losses.detach().double().cpu()
            settled = active & ((last - values).abs() / last.abs() < RELATIVE_CHANGE)
            last = torch.where(active, values, last)
            active &= ~settled
            if not active.any():
                break
        return final.view(n_classes, p.images).max(dim=1).values.numpy(), steps

    @staticmethod
    def margin_of(clip, images, weights, scale, classes) -> torch.Tensor:
        features = F.normalize(clip.model.encode_image(
            clip.normalize_float(images.clamp(0.0, 1.0))).float(), dim=-1)
        return margins(scale * features @ weights, classes)
