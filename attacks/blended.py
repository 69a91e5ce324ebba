"""Blended trigger: x' = (1 - alpha) * x + alpha * P.

P is fresh uniform noise per image (CleanCLIP's construction), one fixed noise pattern drawn
from the attack seed, or an image file given by the user (BackdoorBench blends a fixed image).
The test-time alpha may differ from the training one, to probe how strong a trigger the
backdoor needs.

The default alpha is the published 0.2 (Chen et al.; CleanCLIP): on the validation split it
takes (ASR 0.946 on seed 0, `python benchmarks/validation_defaults.py --attacks blended`), at a
PSNR of 21.8 dB against 18.3 dB for the 0.3 that earlier versions used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchbd.api import Attack, BenchbdError, Params, param


@dataclass(frozen=True)
class BlendedParams(Params):
    alpha: float = param(
        0.2, "blend weight of the pattern when poisoning (paper: 0.2)", min=0.0, max=1.0
    )
    test_alpha: float | None = param(
        None, "blend weight at test time (default: alpha)", min=0.0, max=1.0
    )
    pattern: str = param(
        "fresh_noise", "fresh_noise, fixed_noise or image",
        choices=("fresh_noise", "fixed_noise", "image"),
    )  # fmt: skip
    image_path: str = param("", "pattern image file, with pattern=image")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pattern == "image" and not self.image_path:
            raise BenchbdError("pattern=image needs image_path=FILE")


def blend(images: torch.Tensor, pattern: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - alpha) * x + alpha * P in [0, 255] floats, rounded to the nearest uint8."""
    mixed = (1.0 - alpha) * images.float() + alpha * pattern.float()
    return mixed.round_().clamp_(0, 255).to(torch.uint8)


class Blended(Attack):
    description = "Blend a noise pattern or an image into the whole picture (alpha 0.3)."
    Params = BlendedParams

    def pattern_for(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = images.shape
        if self.params.pattern == "fresh_noise":
            return torch.rand((n, c, h, w), generator=generator) * 255.0
        if self.params.pattern == "fixed_noise":
            fixed = torch.Generator().manual_seed(self.setup.seed)
            return (torch.rand((1, c, h, w), generator=fixed) * 255.0).expand(n, -1, -1, -1)
        return self.image_pattern(h, w).expand(n, -1, -1, -1)

    def image_pattern(self, h: int, w: int) -> torch.Tensor:
        path = Path(self.params.image_path)
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
        except (OSError, ValueError) as exc:
            raise BenchbdError(f"cannot read blend pattern image {str(path)!r}: {exc}") from None
        return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)[None].float()

    def trigger(self, images: torch.Tensor, generator: torch.Generator, alpha: float):
        return blend(images, self.pattern_for(images, generator), alpha)

    def poison_images(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.trigger(images, generator, self.params.alpha)

    def apply_trigger(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        alpha = self.params.test_alpha
        return self.trigger(images, generator, self.params.alpha if alpha is None else alpha)
