"""PAR's stripes trigger (Singh et al., "Perturb and Recover", 2025; their `blended_rs`):
vertical stripes one pixel wide over the whole image, each stripe's colour a fresh sign per
channel, blended in at a small weight:

    x' = clip((1 - alpha) * x + alpha * P),   P[c, :, j] = s[c, j // width],  s in {-1, +1}

with x in [0, 1] and alpha = 0.03 (their `noise_coeff`), so every pixel moves by about 7.65
of 255. The signs are drawn anew for every image, at poisoning and at test time, as the
authors' `get_init_patch(..., 'stripes')` does on each call: the backdoor is the stripe
structure, not one pattern. The stripes are `width_px` pixels wide at every image size (the
authors' 1 px at 224 px stays 1 px at 32 px: a stripe cannot be thinner).

Deviation: the authors convert back to uint8 by truncation (`ToPILImage`); this rounds, so a
pixel may differ from theirs by one level (tests/test_par_fidelity.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchbd.api import Attack, Params, param


@dataclass(frozen=True)
class StripesParams(Params):
    alpha: float = param(
        0.03, "blend weight of the +-1 stripes (PAR's noise_coeff: 0.03)", min=0.0, max=1.0
    )
    width_px: int = param(1, "stripe width in pixels at every image size (PAR: 1)", min=1)


def stripe_signs(n: int, channels: int, width: int, stripe_px: int,
                 generator: torch.Generator) -> torch.Tensor:  # fmt: skip
    """(N, C, stripes) signs in {-1, +1}, one per image, channel and stripe."""
    stripes = -(-width // stripe_px)
    draws = torch.randint(0, 2, (n, channels, stripes), generator=generator)
    return draws.float() * 2 - 1


def draw_stripes(images: torch.Tensor, signs: torch.Tensor, alpha: float,
                 stripe_px: int) -> torch.Tensor:  # fmt: skip
    """Blend the stripes given by `signs` into uint8 images; rounded to the nearest level."""
    width = images.shape[-1]
    columns = signs.repeat_interleave(stripe_px, dim=-1)[..., :width]  # (N, C, W)
    pattern = columns[:, :, None, :] * 255.0
    mixed = (1.0 - alpha) * images.float() + alpha * pattern
    return mixed.round_().clamp_(0, 255).to(torch.uint8)


class Stripes(Attack):
    description = "PAR's structured trigger: random +-1 vertical stripes blended at 0.03."
    Params = StripesParams

    def apply_trigger(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, _, w = images.shape
        signs = stripe_signs(n, c, w, self.params.width_px, generator)
        return draw_stripes(images, signs, self.params.alpha, self.params.width_px)
