"""BadNets-style patch trigger, CleanCLIP's "random" variant.

A square patch at a random location per image, its pixels the image's per-channel mean plus
fresh N(0, 1) noise (in [0, 1] units), clipped before conversion to uint8 (the reference code
lets values wrap around instead). The patch side is a fraction of the image side so the same
attack works at 32 px and 224 px. CleanCLIP's 16 px at 224 px is a fraction of 0.071; at the
embedded data's 32 px that is a 2 px patch, below what the tiny ResNet's stride-4 stem resolves,
and even a 4 px patch (0.125) reached only ASR 0.15 at a 3 % poison rate. The default, 0.25
(8 px at 32 px), reaches ASR above 0.9 at 3 %; pass patch_fraction=0.071 for CleanCLIP's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchbd.params import Params, param
from benchbd.plugins import Attack


@dataclass(frozen=True)
class BadNetParams(Params):
    patch_fraction: float = param(
        0.25, "patch side as a fraction of the image side", min=0.01, max=0.5
    )


class BadNet(Attack):
    description = "Noise patch (image mean + N(0,1)) at a random location (CleanCLIP)."
    Params = BadNetParams

    def patch_side(self, image_side: int) -> int:
        return max(1, round(self.params.patch_fraction * image_side))

    def apply_trigger(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = images.shape
        side = self.patch_side(min(h, w))
        x = images.float() / 255.0
        mean = x.mean(dim=(2, 3), keepdim=True)
        patches = (mean + torch.randn((n, c, side, side), generator=generator)).clamp_(0, 1)
        top = torch.randint(0, h - side + 1, (n,), generator=generator).tolist()
        left = torch.randint(0, w - side + 1, (n,), generator=generator).tolist()
        out = images.clone()
        patches = (patches * 255).round_().to(torch.uint8)
        for i in range(n):
            out[i, :, top[i] : top[i] + side, left[i] : left[i] + side] = patches[i]
        return out
