"""Label-consistent poisoning: trigger only pairs whose caption already names the target class,
and keep every caption (Turner et al. 2019; CleanCLIP's variant adds its patch).

Because no caption is changed, a filter that checks image-caption agreement sees nothing wrong.
The trigger is badnet's patch by default, or any other registered attack's trigger. Optional
hardening first pushes those images away from the target class with PGD (L-inf, eps 8/255)
against a surrogate CLIP trained on clean data, so the model cannot learn them from their
content and must rely on the trigger.

The default trigger is benchbd's, not Turner et al.'s: badnet's checkerboard in all four
corners at badnet's default patch_fraction 0.25, so each corner is 8 x 8 px at 32 px (25 % of
the image side, 56 px at 224 px), far larger and louder than Turner's 3 x 3 px. At the default
3 % poison rate, badnet's random-location noise patch without hardening reached only ASR 0.10
on the embedded data (seed 0); see the README for the measured effect of each choice.

Turner et al.'s trigger is one value, `trigger_params=turner` (on the command line
`--param label_consistent:trigger_params=turner`). It names a preset that stands for badnet's
`pattern=turner,location=four_corners_mirrored,patch_px=3`: the 3 x 3 black-and-white pattern
of their released code in each corner, exactly 3 px at every image size, the right-hand copies
reflected left-right so a horizontal flip augmentation leaves the trigger in place. A preset is
a value of trigger_params rather than a parameter of its own so that the result file names it
where the trigger is recorded, and existing settings keep their recorded parameters and cache
fingerprints. Their reduced-amplitude variant (a trigger added at a fraction of full contrast)
is not provided.

Hardening is on by default, as in Turner et al., but against a different model: the surrogate
is a standard CLIP trained on the clean split with the pretraining recipe, not an
adversarially trained one as theirs was. They used a robust model because its adversarial
perturbations change what the image appears to show and so stay hard for a freshly trained
model; perturbations against a standard model are closer to noise and may transfer less, so
at the same eps the hardening here can leave more of the content for the victim to learn from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchbd.api import (
    Attack,
    AttackSetup,
    BenchbdError,
    PairSet,
    Params,
    attacks,
    build,
    did_you_mean,
    param,
    parse_assignments,
    zero_shot_weights,
)

# Named trigger settings of published attacks: a trigger_params value without "=" is one of
# these names, and stands for the badnet parameters it maps to. Result files record the name,
# so what a name stands for must never change; a different setting gets a new name.
TRIGGER_PRESETS = {
    # Turner et al. 2019: 3 x 3 px in each corner, right-hand copies reflected left-right.
    "turner": "pattern=turner,location=four_corners_mirrored,patch_px=3",
}


@dataclass(frozen=True)
class LabelConsistentParams(Params):
    trigger: str = param("badnet", "the registered attack whose trigger is added")
    trigger_params: str = param(
        "pattern=checkerboard,location=four_corners",
        "that attack's parameters, comma-separated (default: 8 px checkerboards in the four "
        "corners at 32 px), or 'turner' for Turner et al.'s 3 x 3 mirrored corners",
    )
    harden: bool = param(True, "PGD-harden the images against a clean surrogate first")
    eps: float = param(8 / 255, "PGD L-inf radius, in [0, 1] pixel units", min=0.0, max=1.0)
    step: float = param(1.5 / 255, "PGD step size, in [0, 1] pixel units", min=0.0, max=1.0)
    steps: int = param(100, "PGD iterations", min=1)

    def __post_init__(self) -> None:
        """A preset name is checked here, so a mistyped one fails when the run is planned."""
        super().__post_init__()
        text = self.trigger_params.strip()
        if not text or "=" in text:
            return
        if text not in TRIGGER_PRESETS:
            raise BenchbdError(
                f"parameter 'trigger_params' must be name=value pairs or a preset, got "
                f"{text!r}{did_you_mean(text, TRIGGER_PRESETS)}"
            )
        if self.trigger != "badnet":
            raise BenchbdError(
                f"trigger_params={text} is a badnet setting; it needs trigger=badnet, "
                f"not {self.trigger!r}"
            )

    def trigger_assignments(self) -> list[str]:
        """trigger_params as name=value strings, a preset replaced by what it stands for."""
        text = TRIGGER_PRESETS.get(self.trigger_params.strip(), self.trigger_params)
        return [a for a in text.split(",") if a.strip()]


def mentions(caption: str, names: list[str]) -> bool:
    """Whether a caption names the class: any of its names as whole words, case-insensitive."""
    text = caption.lower()
    return any(re.search(rf"\b{re.escape(name.lower())}\b", text) for name in names)


class LabelConsistent(Attack):
    description = "Trigger only pairs already captioned with the target; captions unchanged."
    Params = LabelConsistentParams
    test_params = {"steps": 2}  # PGD hardening: two iterations, not a hundred

    def __init__(self, params: LabelConsistentParams, setup: AttackSetup) -> None:
        super().__init__(params, setup)
        if params.trigger == "label_consistent":
            raise BenchbdError("label_consistent cannot use its own trigger")
        cls = attacks.get(params.trigger)
        if not cls.poisons:
            raise BenchbdError(f"attack {params.trigger!r} has no trigger to add")
        inner = parse_assignments(params.trigger_assignments())
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
