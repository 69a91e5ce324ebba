"""PAR, "Perturb and Recover" (Singh et al., 2025): finetune the poisoned model on clean pairs
with the CLIP loss while pushing its embeddings away from those of the frozen poisoned model,
until they are far enough apart:

    loss = L_clip(I, T) - w * (thr(d_image) + thr(d_text)),
    d_image = mean_i ||I_i - I0_i||^2,  d_text = mean_i ||T_i - T0_i||^2,
    thr(d) = d if d <= tau else 0

I, T are the normalised embeddings of the model being cleaned, I0, T0 those of a frozen copy of
the poisoned model on the same (augmented) images and captions; w = 0.5 and tau = 2.15, as the
authors' `losses.CLIPLoss` (nmndeep/PerturbAndRecover). The perturbation (minus the distance)
drives the embeddings off the poisoned ones, which the trigger's shortcut lives in; once a
distance passes tau its term is zeroed (no gradient) and only the recovery, the CLIP loss,
acts. The logit scale enters as a constant (the authors take `.exp().item()`), so it is not
trained. Both models see the same view of each image: the authors' preprocessing adds, with
probability 0.5 each, non-negative Gaussian noise (std 0.2, clipped to [0, 1]) before
normalising and a small erased square (0.5-1 % of the area, set to 0 after normalising).
Under torchrun both distances are over the global batch (gathered), as the authors' are.

The recipe is benchbd's CleanCLIP one (docs/defaults.md), so the two are compared at the same
budget on the same clean split, with the authors' weight decay (1e-4) and loss settings; see
docs/fidelity.md for every deviation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from benchbd.defenses.cleanclip import FinetuneParams, check_batch, clean_subset

from benchbd.api import (
    Batch,
    ClipBundle,
    Defense,
    DefenseContext,
    clip_loss,
    gathered_with_grad,
    param,
    substream,
    train,
    world,
)


@dataclass(frozen=True)
class PARParams(FinetuneParams):
    weight_decay: float = param(1e-4, "AdamW weight decay (PAR: 1e-4)", min=0.0)
    threshold: float = param(
        2.15, "tau: a distance term is dropped once the mean squared distance passes it "
        "(PAR: 2.15; unit vectors are at most 4 apart)", min=0.0, max=4.0,
    )  # fmt: skip
    perturb_weight: float = param(0.5, "w: weight of the two distance terms (PAR: 0.5)", min=0.0)
    noise_p: float = param(0.5, "probability of the additive noise view (PAR: 0.5)", min=0, max=1)
    noise_std: float = param(0.2, "std of that noise, in [0, 1] units (PAR: 0.2)", min=0.0)
    erase_p: float = param(0.5, "probability of erasing a square (PAR: 0.5)", min=0, max=1)
    erase_min: float = param(0.005, "smallest erased area fraction (PAR: 0.005)", min=0, max=1)
    erase_max: float = param(0.01, "largest erased area fraction (PAR: 0.01)", min=0, max=1)


def thresholded(distance: torch.Tensor, threshold: float) -> torch.Tensor:
    """The distance while it is at most the threshold, else 0 (and no gradient), as the
    authors' `threshold_tensor(d, tau, 0.0)`."""
    return torch.where(distance > threshold, torch.zeros_like(distance), distance)


def mean_squared_distance(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """mean_i ||f_i - r_i||^2 (the squared L2 summed over dimensions, averaged over rows), over
    the global batch under torchrun."""
    if world().size > 1:
        features, reference = gathered_with_grad(features, reference)
    return (features - reference).pow(2).sum(dim=1).mean()


def par_loss(image: torch.Tensor, text: torch.Tensor, ref_image: torch.Tensor,
             ref_text: torch.Tensor, logit_scale: torch.Tensor, threshold: float = 2.15,
             weight: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(loss, d_image, d_text): the CLIP loss at a constant logit scale minus `weight` times
    the thresholded mean squared distances to the frozen model's embeddings (all normalised)."""
    d_image = mean_squared_distance(image, ref_image)
    d_text = mean_squared_distance(text, ref_text)
    perturb = thresholded(d_image, threshold) + thresholded(d_text, threshold)
    loss = clip_loss(image, text, logit_scale.detach()) - weight * perturb
    return loss, d_image.detach(), d_text.detach()


def noisy(images: torch.Tensor, p: float, std: float, generator: torch.Generator):
    """Images in [0, 1]: with probability p each gets + clip(N(0, std^2), 0, 1), then the sum is
    clipped to [0, 1] (the authors' AddGaussianNoise under RandomApply)."""
    chosen = torch.rand(len(images), generator=generator) < p
    noise = (torch.randn(images.shape, generator=generator) * std).clamp_(0, 1)
    return torch.where(chosen[:, None, None, None], (images + noise).clamp_(0, 1), images)


def erase_boxes(n: int, height: int, width: int, params: PARParams,
                generator: torch.Generator) -> list[tuple[int, int, int] | None]:  # fmt: skip
    """Per image, (top, left, side) of the square to erase, or None: with probability
    erase_p, a square (aspect ratio 1) of area fraction uniform in [erase_min, erase_max] at a
    uniform position, kept only when its side is under the image side less 4, as the authors'
    RandomErasing (one try; at benchbd's sizes the first always fits)."""
    chosen = (torch.rand(n, generator=generator) < params.erase_p).tolist()
    low, high = sorted((params.erase_min, params.erase_max))
    areas = (low + (high - low) * torch.rand(n, generator=generator)) * height * width
    boxes: list[tuple[int, int, int] | None] = []
    for pick, area in zip(chosen, areas.tolist(), strict=True):
        side = round(area**0.5)
        if not pick or side == 0 or not (side < height - 4 and side < width - 4):
            boxes.append(None)
            continue
        top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - side + 1, (1,), generator=generator))
        boxes.append((top, left, side))
    return boxes


class PARObjective:
    """`par_loss` over a batch; the frozen model sees the same view. Each step's view is drawn
    from the substream `par:<step>` of `seed`. Counts how often each perturbation was on."""

    def __init__(self, frozen: torch.nn.Module, params: PARParams, seed: int) -> None:
        self.frozen = frozen
        self.params = params
        self.seed = seed
        self.steps = 0
        self.image_on = 0
        self.text_on = 0
        self.distances = (float("nan"), float("nan"))

    def view(self, clip: ClipBundle, images: torch.Tensor, step: int) -> torch.Tensor:
        p = self.params
        generator = torch.Generator().manual_seed(substream(self.seed, f"par:{step}"))
        x = noisy(images.float() / 255.0, p.noise_p, p.noise_std, generator)
        boxes = erase_boxes(len(x), x.shape[-2], x.shape[-1], p, generator)
        device = next(clip.model.parameters()).device
        z = clip.normalize_float(x.to(device))
        for i, box in enumerate(boxes):
            if box is not None:
                top, left, side = box
                z[i, :, top : top + side, left : left + side] = 0.0
        return z

    def __call__(self, clip: ClipBundle, batch: Batch) -> torch.Tensor:
        inputs = self.view(clip, batch.images, batch.step)
        tokens = batch.tokens.to(inputs.device)
        out = clip.model(inputs, tokens)
        with torch.no_grad():
            ref = self.frozen(inputs, tokens)
        p = self.params
        loss, d_image, d_text = par_loss(
            out["image_features"], out["text_features"], ref["image_features"],
            ref["text_features"], out["logit_scale"], p.threshold, p.perturb_weight,
        )  # fmt: skip
        self.steps += 1
        self.image_on += int(d_image.item() <= p.threshold)
        self.text_on += int(d_text.item() <= p.threshold)
        self.distances = (d_image.item(), d_text.item())
        return loss


class PAR(Defense):
    description = "PAR: CLIP loss while pushing embeddings off the poisoned model's (to tau)."
    Params = PARParams
    test_params = {"epochs": 1.0, "batch_size": 32, "clean_pairs": 64}

    def check(self, context: DefenseContext) -> None:
        check_batch(len(clean_subset(context, self.params.clean_pairs)), self.params.batch_size)

    def apply(self, clip: ClipBundle, context: DefenseContext) -> ClipBundle:
        frozen = copy.deepcopy(clip.model).eval().requires_grad_(False)
        self.objective = PARObjective(frozen, self.params, context.seed)
        pairs = clean_subset(context, self.params.clean_pairs)
        train(clip, pairs, self.params.train_config(), seed=context.seed,
              objective=self.objective, stage="defense", progress=context.progress)  # fmt: skip
        return clip

    def report(self) -> dict:
        """How often each perturbation term was on (distance at most tau), and the distances
        of the last step: a term never switched off means the threshold was never reached."""
        objective = getattr(self, "objective", None)
        if objective is None or objective.steps == 0:
            return {}
        return {
            "image_perturb_on": objective.image_on / objective.steps,
            "text_perturb_on": objective.text_on / objective.steps,
            "final_image_distance": objective.distances[0],
            "final_text_distance": objective.distances[1],
        }
