"""PAR's text watermark trigger (Singh et al., "Perturb and Recover", 2025; their
`water_patt`): the word "Watermarked" in red across the middle of the image, blended in at
weight 0.5 where the text has ink and nowhere else:

    x' = where(P != 0, (1 - alpha) * x + alpha * P, x)

element by element, so with red text only the red channel of the lettering changes (the
authors' `blended_patt`). The pattern is fixed: the same for every image.

The authors stored one rendering (`watermarked_red_tens_224.pt`, NotoMono at about 30 px, the
ink 196 px wide and 23 px tall at 224 px, centred). No font file is fetched here: the text is
drawn with PIL's built-in bitmap font (6 px glyphs, 66 x 7 px of ink for "Watermarked") and
resized with area averaging to `width_fraction` of the image side (theirs: 196 / 224 = 0.875),
keeping its aspect ratio, and centred. Area averaging gives the letters soft edges as the
authors' anti-aliased font does; at 224 px the ink is 196 x 21 px against their 196 x 23, at
32 px 28 x 3 px.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from benchbd.api import Attack, BenchbdError, Params, param

COLOURS = {"red": (255, 0, 0), "white": (255, 255, 255), "yellow": (255, 255, 0)}


@dataclass(frozen=True)
class WatermarkParams(Params):
    text: str = param("Watermarked", "the text drawn (PAR: Watermarked)")
    alpha: float = param(0.5, "blend weight where the text has ink (PAR: 0.5)", min=0.0, max=1.0)
    width_fraction: float = param(
        0.875, "text width as a fraction of the image width (PAR: 196 px at 224 px)",
        min=0.05, max=1.0,
    )  # fmt: skip
    colour: str = param("red", "text colour (PAR: red)", choices=tuple(COLOURS))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.text.strip():
            raise BenchbdError("watermark: text must have at least one visible character")


def bitmap_font() -> ImageFont.ImageFont:
    """PIL's built-in bitmap font (no file, no download); Pillow < 10.1 returns it as the
    plain default."""
    return getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()


@functools.cache
def text_ink(text: str, colour: str) -> Image.Image:
    """The text in `colour` on black, cropped to its ink."""
    font = bitmap_font()
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("RGB", (right - left + 2, bottom - top + 2), "black")
    ImageDraw.Draw(canvas).text((1 - left, 1 - top), text, fill=COLOURS[colour], font=font)
    box = canvas.getbbox()
    if box is None:
        raise BenchbdError(f"watermark: the text {text!r} draws no ink")
    return canvas.crop(box)


@functools.cache
def watermark_pattern(height: int, width: int, text: str, colour: str,
                      width_fraction: float) -> torch.Tensor:  # fmt: skip
    """(3, H, W) float pattern in [0, 255]: the text resized to width_fraction of the width
    (area averaging), centred on black."""
    ink = text_ink(text, colour)
    text_w = max(1, min(width, round(width_fraction * width)))
    text_h = max(1, min(height, round(ink.height * text_w / ink.width)))
    scaled = ink.resize((text_w, text_h), Image.Resampling.BOX)
    canvas = Image.new("RGB", (width, height), "black")
    canvas.paste(scaled, ((width - text_w) // 2, (height - text_h) // 2))
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float()


def blend_where_inked(images: torch.Tensor, pattern: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - alpha) x + alpha P where P is not 0 (element by element), x elsewhere; rounded."""
    x = images.float()
    mixed = torch.where(pattern != 0, (1.0 - alpha) * x + alpha * pattern, x)
    return mixed.round_().clamp_(0, 255).to(torch.uint8)


class Watermark(Attack):
    description = "PAR's structured trigger: a red text watermark blended at 0.5 on its ink."
    Params = WatermarkParams

    def pattern(self, height: int, width: int) -> torch.Tensor:
        p = self.params
        return watermark_pattern(height, width, p.text, p.colour, p.width_fraction)

    def apply_trigger(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        h, w = images.shape[-2:]
        return blend_where_inked(images, self.pattern(h, w), self.params.alpha)
