"""DECREE (Feng et al., "Detecting Backdoors in Pre-trained Encoders", CVPR 2023): invert a
trigger on the image encoder alone and take its size as the score.

As its authors' code (GiantSeaweed/DECREE, main.py and utils.py) computes it: a 2-D mask m and
a 3-channel pattern p, each held through tanh (`x = tanh(w) / (2 - eps) + 0.5`, clipped to
[0, 1]; the pattern scaled to 0-255) and initialised uniformly at random through its inverse
(`--mask_init rand`); the triggered image `(1 - m) * x + m * p` on 0-255 pixels, clipped,
normalised and encoded; the loss `-mean off-diagonal cosine similarity of the batch's
embeddings + lambda * ||m||_1` (the mask repeated over 3 channels); Adam at lr 0.5 (the
authors' CLIP run), betas (0.5, 0.9), lowered to 0.1 and 0.05 at two epochs; lambda starting at
1e-3, multiplied or divided by 5 after `patience` steps above or below the success threshold
(0.99), reset after 2 x patience steps under its floor; the smallest ||m||_1 of a step whose
|cosine| passed the threshold kept; early stop when an epoch's mean |cosine| passes the
threshold and the best norm has not improved for the early-stop patience of steps.

The score is 1 - PL1, PL1 = ||m||_1 / (3 H W), the norm per mask entry the paper thresholds
(trojaned below 0.1): higher = more likely backdoored. DECREE names no target class; the
suspected target here is the class the zero-shot classifier gives most of the clean images
under the inverted trigger (an addition, stated in docs/fidelity.md).

Scaled for benchbd's small models and images (docs/fidelity.md): the schedule of the authors'
32-pixel encoders (lr drops at epochs 30 and 50, lambda floor 1e-5, early-stop patience 10
steps), epochs capped at `max_epochs` (the authors' 1,000 is hours per model), the shadow set
the defender's clean images (capped at `images`), batch 32 as the authors' CLIP run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchbd.api import (
    ClipBundle,
    DetectionContext,
    ModelDetector,
    ModelVerdict,
    Params,
    param,
    predict,
    zero_shot_weights,
)

EPSILON = 1e-7  # the authors' utils.epsilon()
INITIAL_LAMBDA = 1e-3
LAMBDA_FACTOR = 5.0  # adaptor_lambda
LAMBDA_CEILING = 1e5


@dataclass(frozen=True)
class DecreeParams(Params):
    lr: float = param(0.5, "Adam learning rate on the mask and pattern (authors' CLIP run)",
                      min=0.0)  # fmt: skip
    batch_size: int = param(32, "clean images per step (authors' CLIP run: 32)", min=2)
    images: int = param(1000, "clean images in the shadow set (0 = every one given)", min=0)
    max_epochs: int = param(60, "passes over the shadow set at most (authors: 1000)", min=1)
    threshold: float = param(0.99, "|cosine| a trigger must reach to count as found",
                             min=0.0, max=1.0)  # fmt: skip
    patience: int = param(5, "steps before lambda is raised or lowered", min=1)
    early_stop_patience: int = param(10, "steps without a smaller norm before stopping",
                                     min=1)  # fmt: skip
    lambda_min: float = param(1e-5, "lambda's floor (authors: 1e-5 for 32-pixel encoders)",
                              min=0.0)  # fmt: skip
    lr_epochs: str = param("30,50", "epochs at which lr drops to 0.1 and then 0.05")

    def drops(self) -> tuple[int, int]:
        first, second = (int(x) for x in self.lr_epochs.split(","))
        return first, second


def to_raw(values: torch.Tensor) -> torch.Tensor:
    """The unconstrained variable whose `squash` is `values` (the authors' arctanh)."""
    return torch.arctanh((values - 0.5) * (2 - EPSILON))


def squash(raw: torch.Tensor) -> torch.Tensor:
    """A raw variable mapped into [0, 1]: tanh(w) / (2 - eps) + 0.5, clipped."""
    return torch.clamp(torch.tanh(raw) / (2 - EPSILON) + 0.5, 0.0, 1.0)


def stamp(images: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in 0-255 under a mask (H, W) in [0, 1] and a pattern (3, H, W) in
    0-255: (1 - m) x + m p, clipped to 0-255."""
    return torch.clamp((1 - mask) * images + mask * pattern, 0.0, 255.0)


def self_cosine(features: torch.Tensor) -> torch.Tensor:
    """The mean cosine similarity between distinct embeddings of a batch (utils.py's
    compute_self_cos_sim)."""
    normed = F.normalize(features, dim=-1)
    similarity = normed @ normed.T
    n = len(features)
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=features.device)
    return similarity[off_diagonal].mean()


def mask_norm(mask: torch.Tensor) -> torch.Tensor:
    """||m||_1 of the mask as the authors' loss takes it: repeated over the 3 channels."""
    return 3 * mask.abs().sum()


def decree_loss(features: torch.Tensor, mask: torch.Tensor, lam: float):
    """(loss, cosine term, norm term): -self_cosine + lambda * ||m||_1."""
    cosine, norm = -self_cosine(features), mask_norm(mask)
    return cosine + lam * norm, cosine, norm


class LambdaSchedule:
    """The authors' adaptation of lambda, one call per step (main.py's counters)."""

    def __init__(self, params: DecreeParams) -> None:
        self.params, self.value = params, INITIAL_LAMBDA
        self.up = self.down = self.reset = 0

    def step(self, success: bool) -> float:
        p = self.params
        if self.value < p.lambda_min and success:
            self.reset += 1
            if self.reset > 2 * p.patience:
                self.value, self.up, self.down = INITIAL_LAMBDA, 0, 0
        else:
            self.reset = 0
        self.up, self.down = (self.up + 1, 0) if success else (0, self.down + 1)
        if self.up > p.patience:
            if self.value < LAMBDA_CEILING:
                self.value *= LAMBDA_FACTOR
            self.up = 0
        elif self.down > p.patience:
            if self.value >= p.lambda_min:
                self.value /= LAMBDA_FACTOR
            self.down = 0
        return self.value


def epoch_lr(params: DecreeParams, epoch: int) -> float:
    """main.py's adjust_learning_rate: lr, then 0.1, then 0.05."""
    first, second = params.drops()
    return params.lr if epoch < first else 0.1 if epoch < second else 0.05


class Decree(ModelDetector):
    Params = DecreeParams
    description = ("Model: invert a trigger that collapses the image encoder's embeddings; "
                   "a small one means a backdoor (DECREE).")  # fmt: skip
    test_params = {"max_epochs": 2, "images": 64}

    def detect(self, clip: ClipBundle, context: DetectionContext) -> ModelVerdict:
        p = self.params
        images = shadow_images(context, p.images)
        generator = torch.Generator().manual_seed(context.seed)
        size = images.shape[-1]
        raw_mask = to_raw(torch.rand(size, size, generator=generator, dtype=torch.float64))
        raw_pattern = to_raw(torch.rand(3, size, size, generator=generator, dtype=torch.float64))
        raw_mask.requires_grad_(True)
        raw_pattern.requires_grad_(True)
        optimizer = torch.optim.Adam([raw_mask, raw_pattern], lr=p.lr, betas=(0.5, 0.9))
        device = next(clip.model.parameters()).device
        was_training = clip.model.training
        clip.model.eval()
        for parameter in clip.model.parameters():
            parameter.requires_grad_(False)
        schedule, best, best_mask = LambdaSchedule(p), math.inf, None
        stale, steps, epoch = 0, 0, 0
        try:
            for epoch in range(p.max_epochs):  # noqa: B007  (the last epoch is reported)
                for group in optimizer.param_groups:
                    group["lr"] = epoch_lr(p, epoch)
                order = torch.randperm(len(images), generator=generator)
                cosines = []
                for start in range(0, len(images), p.batch_size):
                    batch = images[order[start : start + p.batch_size]].to(torch.float64)
                    if len(batch) < 2:  # one image has no pair to be similar to
                        continue
                    mask, pattern = squash(raw_mask), squash(raw_pattern) * 255.0
                    # normalised in float64 and cast to float32 for the encoder, and the
                    # cosine taken in the encoder's float32, as the authors' code does
                    triggered = stamp(batch, mask, pattern) / 255.0
                    features = clip.model.encode_image(
                        clip.normalize_float(triggered.to(device)).float())
                    loss, cosine, norm = decree_loss(features, mask, schedule.value)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    steps += 1
                    success = abs(cosine.item()) > p.threshold
                    cosines.append(abs(cosine.item()))
                    if success and norm.item() < best:
                        best, best_mask = norm.item(), (mask.detach(), pattern.detach())
                        stale = 0
                    elif best < math.inf:
                        stale += 1
                    schedule.step(success)
                if cosines and sum(cosines) / len(cosines) > p.threshold \
                        and stale > p.early_stop_patience:  # fmt: skip
                    break
        finally:
            for parameter in clip.model.parameters():
                parameter.requires_grad_(True)
            clip.model.train(was_training)
        return self.verdict(clip, context, images, best, best_mask, epoch + 1, steps)

    def verdict(self, clip, context, images, best, best_mask, epochs, steps) -> ModelVerdict:
        size = images.shape[-1]
        found = best_mask is not None
        pl1 = best / (3 * size * size) if found else 1.0
        target, share = None, None
        if found:
            mask, pattern = best_mask
            triggered = stamp(images.double(), mask, pattern).round().to(torch.uint8)
            weights = zero_shot_weights(clip, context.task)
            with torch.no_grad():
                counts = torch.bincount(predict(clip, triggered, weights),
                                        minlength=len(context.task.classnames))  # fmt: skip
            target, share = int(counts.argmax()), float(counts.max()) / len(images)
        details = {"l1": round(best, 4) if found else None, "pl1": round(pl1, 6),
                   "found": found, "epochs": epochs, "steps": steps,
                   "target_share": share}  # fmt: skip
        return ModelVerdict(1.0 - pl1, target, details)


def shadow_images(context: DetectionContext, cap: int) -> torch.Tensor:
    """The defender's clean images as floats in 0-255 (the first `cap`; 0 = all)."""
    images = context.clean.images
    return (images[:cap] if cap else images).to(torch.float64)
