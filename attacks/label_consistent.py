"""Label-consistent poisoning: trigger only pairs whose caption already names the target class,
and keep every caption (Turner et al. 2019; CleanCLIP's variant adds its patch).

Because no caption is changed, a filter that checks image-caption agreement sees nothing wrong.
The trigger is badnet's patch by default, or any other registered attack's trigger. Optional
hardening first pushes those images away from the target class with PGD (L-inf, eps 8/255)
against a surrogate CLIP trained on clean data, so the model cannot learn them from their
content and must rely on the trigger.

Defaults follow Turner et al.: hardening on, and the patch in all four corners (a checkerboard
here). At the default 3 % poison rate, badnet's random-location noise patch without hardening
reached only ASR 0.10 on the embedded data (seed 0); see the README for the measured effect
of each choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchbd.data.pairs import PairSet
from benchbd.errors import BenchbdError
from benchbd.evaluate import zero_shot_weights
from benchbd.params import Params, build, param, parse_assignments
from benchbd.plugins import Attack, AttackSetup, attacks


@dataclass(frozen=True)
class LabelConsistentParams(Params):
    trigger: str = param("badnet", "the registered attack whose trigger is added")
    trigger_params: str = param(
        "pattern=checkerboard,location=four_corners",
        "that attack's parameters, comma-separated (Turner et al.: all four corners)",
    )
    harden: bool = param(True, "PGD-harden the images against a clean surrogate first")
    eps: float = param(8 / 255, "PGD L-inf radius, in [0, 1] pixel units", min=0.0, max=1.0)
    step: float = param(1.5 / 255, "PGD step size, in [0, 1] pixel units", min=0.0, max=1.0)
    steps: int = param(100, "PGD iterations", min=1)


def mentions(caption: str, names: list[str]) -> bool:
    """Whether a caption names the class: any of its names as whole words, case-insensitive."""
    text = caption.lower()
    return any(re.search(rf"\b{re.escape(name.lower())}\b", text) for name in names)


class LabelConsistent(Attack):
    description = "Trigger only pairs already captioned with the target; captions unchanged."
    Params = LabelConsistentParams

    def __init__(self, params: LabelConsistentParams, setup: AttackSetup) -> None:
        super().__init__(params, setup)
        if params.trigger == "label_consistent":
            raise BenchbdError("label_consistent cannot use its own trigger")
        cls = attacks.get(params.trigger)
        if not cls.poisons:
            raise BenchbdError(f"attack {params.trigger!r} has no trigger to add")
        inner = parse_assignments([a for a in params.trigger_params.split(",") if a.strip()])
        self.inner = cls(build(cls.Params, inner, f"trigger {params.trigger!r}"), setup)

    def eligible(self, pairs: PairSet) -> torch.Tensor:
        names = self.setup.task.names_for(self.setup.target_name)
        rows = [i for i, caption in enumerate(pairs.captions) if mentions(caption, names)]
        return torch.tensor(rows, dtype=torch.long)

    def poison_captions(self, pairs: PairSet, rows: list[int], generator) -> list[str]:
        return [pairs.captions[row] for row in rows]

    def poison_images(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.params.harden:
            images = self.harden(images)
        return self.inner.poison_images(images, generator)

    def apply_trigger(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.inner.apply_trigger(images, generator)

    def harden(self, images: torch.Tensor) -> torch.Tensor:
        """Untargeted PGD away from the target class under the surrogate's zero-shot head."""
        if self.setup.surrogate is None:
            raise BenchbdError("harden=true needs a surrogate model; run it through the pipeline")
        clip = self.setup.surrogate()
        model = clip.model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        weights = zero_shot_weights(clip, self.setup.task)
        device = weights.device
        target = torch.full((len(images),), self.setup.target, device=device)
        hardened = []
        for start in range(0, len(images), 256):
            x0 = images[start : start + 256].to(device).float() / 255.0
            x = x0.clone()
            for _ in range(self.params.steps):
                x.requires_grad_(True)
                features = F.normalize(model.encode_image(clip.normalize_float(x)), dim=-1)
                logits = 100.0 * features @ weights
                loss = F.cross_entropy(logits, target[start : start + len(x)])
                (grad,) = torch.autograd.grad(loss, x)
                with torch.no_grad():
                    x = x + self.params.step * grad.sign()
                    x = torch.min(torch.max(x, x0 - self.params.eps), x0 + self.params.eps)
                    x = x.clamp(0, 1)
            hardened.append((x.detach() * 255).round().to(torch.uint8).cpu())
        for p in model.parameters():
            p.requires_grad_(True)
        return torch.cat(hardened)
