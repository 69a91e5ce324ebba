"""BadNets-style patch triggers, with CleanCLIP's "random" patch as the default.

CleanCLIP's patch: a square at a random location per image, its pixels the image's per-channel
mean plus fresh N(0, 1) noise (in [0, 1] units), clipped before conversion to uint8 (the
reference code lets values wrap around instead). The classic variants of BackdoorBench and
BackdoorBox are here too: a fixed white, checkerboard, yellow or seeded-noise pattern, in a
chosen corner, at a random location, or in all four corners.

Turner et al.'s label-consistent trigger (2019) is `pattern=turner,location=four_corners_mirrored,
patch_px=3`: the 3 x 3 black-and-white pattern of their released code in all four corners, the
right-hand copies reflected left-right, so that a horizontal flip augmentation maps the trigger
onto itself instead of moving it. As in that code, the bottom copies are the top ones, not
reflected top-bottom (no flip augmentation flips vertically).

The patch side is a fraction of the image side so the same attack works at 32 px and 224 px.
CleanCLIP's 16 px at 224 px is a fraction of 0.071; at the embedded data's 32 px that is a 2 px
patch, below what the tiny ResNet's stride-4 stem resolves, and even a 4 px patch (0.125)
reached only ASR 0.15 at a 3 % poison rate. The default, 0.25 (8 px at 32 px), reaches ASR
above 0.9 at 3 %; pass patch_fraction=0.071 for CleanCLIP's size. A published trigger given in
pixels (Turner's 3 x 3) is patch_px, a side that stays the same at every image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchbd.api import Attack, BenchbdError, Params, param

PATTERNS = ("noise", "white", "checkerboard", "yellow", "seeded_noise", "turner")
LOCATIONS = ("random", "top_left", "top_right", "bottom_left", "bottom_right", "four_corners",
             "four_corners_mirrored")  # fmt: skip
# The top-left copy of Turner et al.'s all-corners trigger (1 white, 0 black), from their
# released code: a checkerboard but for its top-right cell, so a reflection of it is visible.
TURNER_PATTERN = ((1, 0, 0), (0, 1, 0), (1, 0, 1))


@dataclass(frozen=True)
class BadNetParams(Params):
    patch_fraction: float = param(
        0.25, "patch side as a fraction of the image side", min=0.01, max=0.5
    )
    pattern: str = param(
        "noise", "noise (mean + N(0,1), fresh per image), white, checkerboard, yellow, "
        "seeded_noise, turner (Turner et al.'s 3 x 3 black and white)", choices=PATTERNS,
    )  # fmt: skip
    location: str = param(
        "random", "random, a corner, four_corners, or four_corners_mirrored (the right-hand "
        "copies reflected left-right, as Turner et al.)", choices=LOCATIONS,
    )  # fmt: skip
    # Added after the reference results: not recorded at 0, so their fingerprints still hold.
    patch_px: int = param(
        0, "patch side in pixels at every image size (Turner et al.: 3); 0: patch_fraction",
        min=0, recorded_at_default=False,
    )  # fmt: skip


class BadNet(Attack):
    description = "Patch trigger; default CleanCLIP's noise patch at a random location."
    Params = BadNetParams

    def patch_side(self, image_side: int) -> int:
        """The patch side in pixels: patch_px when set, else patch_fraction of the image side."""
        if self.params.patch_px:
            if self.params.patch_px > image_side:
                raise BenchbdError(
                    f"badnet: patch_px={self.params.patch_px} is wider than the "
                    f"{image_side} px images"
                )
            return self.params.patch_px
        return max(1, round(self.params.patch_fraction * image_side))

    def patches(self, images: torch.Tensor, side: int, generator: torch.Generator):
        """(N, 3, side, side) uint8 patches for these images."""
        n, c = images.shape[:2]
        pattern = self.params.pattern
        if pattern == "noise":
            mean = (images.float() / 255.0).mean(dim=(2, 3), keepdim=True)
            noise = torch.randn((n, c, side, side), generator=generator)
            return ((mean + noise).clamp_(0, 1) * 255).round_().to(torch.uint8)
        if pattern == "seeded_noise":
            fixed = torch.Generator().manual_seed(self.setup.seed)
            patch = torch.randint(0, 256, (1, c, side, side), generator=fixed, dtype=torch.uint8)
        elif pattern == "white":
            patch = torch.full((1, c, side, side), 255, dtype=torch.uint8)
        elif pattern == "yellow":
            patch = torch.tensor([255, 255, 0], dtype=torch.uint8).view(1, 3, 1, 1)
            patch = patch.expand(1, c, side, side)
        elif pattern == "turner":  # nearest-neighbour scaled when the side is not 3
            cells = (torch.arange(side) * 3) // side
            board = torch.tensor(TURNER_PATTERN, dtype=torch.uint8)[cells][:, cells] * 255
            patch = board.expand(1, c, side, side)
        else:  # checkerboard, white top-left pixel
            ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
            board = ((ys + xs) % 2 == 0).to(torch.uint8) * 255
            patch = board.expand(1, c, side, side)
        return patch.expand(n, -1, -1, -1)

    def corners(self, n: int, h: int, w: int, side: int, generator: torch.Generator):
        """Top-left coordinates of every patch to paste: a list (one entry per patch per image)."""
        spots = {
            "top_left": (0, 0),
            "top_right": (0, w - side),
            "bottom_left": (h - side, 0),
            "bottom_right": (h - side, w - side),
        }
        location = self.params.location
        if location == "random":
            top = torch.randint(0, h - side + 1, (n,), generator=generator).tolist()
            left = torch.randint(0, w - side + 1, (n,), generator=generator).tolist()
            return [[(t, lft)] for t, lft in zip(top, left, strict=True)]
        if location in ("four_corners", "four_corners_mirrored"):
            return [list(spots.values())] * n
        return [[spots[location]]] * n

    def apply_trigger(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = images.shape
        side = self.patch_side(min(h, w))
        patches = self.patches(images, side, generator)
        # four_corners_mirrored: the copies at the right edge are the patch reflected left-right.
        mirrored = self.params.location == "four_corners_mirrored"
        out = images.clone()
        for i, places in enumerate(self.corners(n, h, w, side, generator)):
            for top, left in places:
                patch = patches[i].flip(-1) if mirrored and left == w - side else patches[i]
                out[i, :, top : top + side, left : left + side] = patch
        return out
