"""Nashville: the Instagram-style colour filter as a trigger, as Detect-CLIP uses it.

Detect-CLIP (Huang et al., ICLR 2025) triggers an image with pilgram's `nashville`, which
reproduces the CSSgram filter of that name in Pillow. This module computes the same thing in
integer and float32 torch arithmetic on uint8 batches, step for step as pilgram 2.0 and Pillow
do, so it needs neither library at run time:

1. darken with (247, 176, 153) at opacity 0.56 (alpha byte 143):
   y = a * min(x, c) / 255 + (255 - a) * x / 255, each product rounded down as Pillow's
   `ImageChops.multiply` does, the sum clipped to 0-255;
2. lighten with (0, 70, 150) at opacity 0.4 (alpha byte 102): the same with max(y, c);
3. CSS sepia(0.2), a 3 x 3 colour matrix (Pillow's `convert` with a matrix: float32 sums,
   plus 0.5, truncated and clipped);
4. CSS contrast(1.2) and brightness(1.05), each a lookup table round(x * 1.2 - 127.5 * 1.2 +
   127.5) and round(x * 1.05), clipped;
5. CSS saturate(1.2), another colour matrix.

A test compares every pixel with pilgram itself when pilgram is installed.

The filter has no parameters in Detect-CLIP; `strength` (default 1: the filter exactly) mixes
it with the original image, x' = round((1 - s) x + s nashville(x)), for a fainter trigger. The
filter is a colour shift of every pixel rather than a pattern, so its visibility depends on
the image's colours, not its size: on 500 embedded test images at 32 px PSNR 22.4 dB, SSIM
0.92, L-inf 0.17 (a warm, washed tint that keeps every edge, hence the high SSIM); strength
0.5 gives 28.5 dB.

Dirty-label, as Detect-CLIP poisons it: random non-target pairs are filtered and captioned with
the target (the default `Attack.poison`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchbd.api import Attack, Params, param

# pilgram's nashville: two fills composited with darken and lighten, then four CSS filters.
DARKEN_COLOUR, DARKEN_OPACITY = (247, 176, 153), 0.56
LIGHTEN_COLOUR, LIGHTEN_OPACITY = (0, 70, 150), 0.4
SEPIA, CONTRAST, BRIGHTNESS, SATURATE = 0.2, 1.2, 1.05, 1.2


@dataclass(frozen=True)
class NashvilleParams(Params):
    strength: float = param(
        1.0, "mix of the filtered image with the original (1: the filter exactly, as "
        "Detect-CLIP)", min=0.0, max=1.0,
    )  # fmt: skip


def multiply255(a: torch.Tensor, b: torch.Tensor | int) -> torch.Tensor:
    """a * b / 255 rounded down, as Pillow's ImageChops.multiply computes it, on int32."""
    return torch.div(a * b, 255, rounding_mode="floor")


def composite(backdrop: torch.Tensor, colour: tuple[int, int, int], opacity: float, blend):
    """A solid colour at `opacity` over the backdrop with a separable blend mode (CSS
    compositing, as pilgram's alpha_blend does it for an opaque backdrop)."""
    alpha = int(round(opacity * 255))  # pilgram's fill: the opacity as an alpha byte
    source = torch.tensor(colour, dtype=torch.int32).view(1, 3, 1, 1)
    blended = blend(backdrop, source)
    out = multiply255(blended, alpha) + multiply255(backdrop, 255 - alpha)
    return out.clamp_(0, 255)


def sepia_matrix(amount: float) -> list[list[float]]:
    s = 1 - min(amount, 1)
    return [[0.393 + 0.607 * s, 0.769 - 0.769 * s, 0.189 - 0.189 * s],
            [0.349 - 0.349 * s, 0.686 + 0.314 * s, 0.168 - 0.168 * s],
            [0.272 - 0.272 * s, 0.534 - 0.534 * s, 0.131 + 0.869 * s]]  # fmt: skip


def saturate_matrix(s: float) -> list[list[float]]:
    return [[0.213 + 0.787 * s, 0.715 - 0.715 * s, 0.072 - 0.072 * s],
            [0.213 - 0.213 * s, 0.715 + 0.285 * s, 0.072 - 0.072 * s],
            [0.213 - 0.213 * s, 0.715 - 0.715 * s, 0.072 + 0.928 * s]]  # fmt: skip


def colour_matrix(images: torch.Tensor, matrix: list[list[float]]) -> torch.Tensor:
    """Pillow's `convert("RGB", matrix)`: per output channel the float32 sum
    m0 r + m1 g + m2 b (in that order), plus 0.5 in double precision stored back as float32,
    then truncated and clipped to 0-255. Each torch operation rounds as the C code does."""
    rgb = images.to(torch.float32).unbind(dim=1)
    channels = []
    for row in matrix:
        m = torch.tensor(row, dtype=torch.float32)  # Pillow parses the matrix as C floats
        total = m[0] * rgb[0] + m[1] * rgb[1]
        total = total + m[2] * rgb[2]
        v = (total.double() + 0.5).to(torch.float32)
        channels.append(v.clamp_(0, 255).to(torch.int32))  # truncation toward zero
    return torch.stack(channels, dim=1)


def lookup(images: torch.Tensor, table: list[int]) -> torch.Tensor:
    """Pillow's `point` with a Python function: the table, clipped to 0-255, per value."""
    clipped = torch.tensor([min(255, max(0, v)) for v in table], dtype=torch.int32)
    return clipped[images.long()]


def contrast_table(amount: float) -> list[int]:
    return [round(x * amount + -127.5 * amount + 127.5) for x in range(256)]


def brightness_table(amount: float) -> list[int]:
    return [round(x * amount) for x in range(256)]


def nashville(images: torch.Tensor) -> torch.Tensor:
    """pilgram's nashville on a uint8 (N, 3, H, W) batch; uint8 of the same shape."""
    x = images.to(torch.int32)
    x = composite(x, DARKEN_COLOUR, DARKEN_OPACITY, torch.minimum)
    x = composite(x, LIGHTEN_COLOUR, LIGHTEN_OPACITY, torch.maximum)
    x = colour_matrix(x, sepia_matrix(SEPIA))
    x = lookup(x, contrast_table(CONTRAST))
    x = lookup(x, brightness_table(BRIGHTNESS))
    x = colour_matrix(x, saturate_matrix(SATURATE))
    return x.to(torch.uint8)


class Nashville(Attack):
    description = "Instagram's Nashville colour filter as the trigger (Detect-CLIP, pilgram)."
    Params = NashvilleParams

    def apply_trigger(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        filtered = nashville(images)
        s = self.params.strength
        if s == 1.0:
            return filtered
        mixed = (1.0 - s) * images.double() + s * filtered.double()
        return mixed.round_().clamp_(0, 255).to(torch.uint8)
