"""PAR's triangles trigger (Singh et al., "Perturb and Recover", 2025; their `tri_patt`): a
grey tiling of right-angled triangles blended into the whole image at weight 0.15.

Each tile is `side` pixels square, split along its diagonal: the lower-left half, diagonal
included, at 0.4 and the upper-right half at 0.8 (in [0, 1]; the same in every channel), as the
authors' `create_triangle_pattern` builds the stored `triangles_224_14.pt`. Only whole tiles are
drawn; a margin the tiles do not fill is 0 there too, so it is darkened by the blend. The
pattern is fixed (the same for every image):

    x' = clip((1 - alpha) * x + alpha * P)

The authors' tile is 14 px at 224 px, a fraction of 0.0625 of the side: 2 px at 32 px. The
tile side scales with the image (`tile_fraction`), or is fixed in pixels (`tile_px`).

Deviation: the authors truncate back to uint8 (`ToPILImage`); this rounds (at most one level).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchbd.api import Attack, Params, param

LOW, HIGH = 0.4, 0.8  # the two halves of a tile, as the authors' pattern holds them


@dataclass(frozen=True)
class TrianglesParams(Params):
    alpha: float = param(0.15, "blend weight of the pattern (PAR: 0.15)", min=0.0, max=1.0)
    tile_fraction: float = param(
        0.0625, "tile side as a fraction of the image side (PAR: 14 px at 224 px)",
        min=0.001, max=1.0,
    )  # fmt: skip
    tile_px: int = param(0, "tile side in pixels at every image size; 0: tile_fraction", min=0)


def triangle_pattern(height: int, width: int, side: int) -> torch.Tensor:
    """(H, W) float pattern in [0, 1]: whole tiles of two right triangles, 0 past the last."""
    rows, cols = torch.arange(height), torch.arange(width)
    inside = (rows < height // side * side)[:, None] & (cols < width // side * side)[None, :]
    lower = (rows % side)[:, None] >= (cols % side)[None, :]
    tiles = torch.where(lower, torch.tensor(LOW), torch.tensor(HIGH))
    return torch.where(inside, tiles, torch.tensor(0.0))


class Triangles(Attack):
    description = "PAR's structured trigger: a tiling of grey triangles blended at 0.15."
    Params = TrianglesParams

    def tile_side(self, image_side: int) -> int:
        if self.params.tile_px:
            return min(self.params.tile_px, image_side)
        return max(1, round(self.params.tile_fraction * image_side))

    def apply_trigger(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        h, w = images.shape[-2:]
        pattern = triangle_pattern(h, w, self.tile_side(min(h, w))) * 255.0
        alpha = self.params.alpha
        mixed = (1.0 - alpha) * images.float() + alpha * pattern
        return mixed.round_().clamp_(0, 255).to(torch.uint8)
