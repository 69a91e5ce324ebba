"""How visible a trigger is: PSNR, SSIM and L-inf of triggered images against the clean ones,
the three figures BackdoorBench reports beside ASR, so a stealthy trigger and a loud one with
the same ASR are told apart.

A pure function of two uint8 batches; nothing here trains or depends on a model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from benchbd.core.errors import BenchbdError

PEAK = 255.0
# PSNR of identical images is infinite, which JSON cannot hold and which would make any mean
# infinite. Each image's PSNR is capped here instead: 100 dB is just above the largest finite
# PSNR of a 224 px image (one pixel off by one: 99.9 dB), so the cap never hides a change at
# the sizes benchbd uses, and a trigger that leaves an image untouched counts as 100 dB.
PSNR_CAP_DB = 100.0
# SSIM as Wang et al. (2004) define it and scikit-image computes it with gaussian_weights=True
# and use_sample_covariance=False: an 11 x 11 Gaussian window (sigma 1.5, truncated at 3.5
# sigma), K1 = 0.01, K2 = 0.03 on the 0-255 range.
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * 1.5 + 0.5): scikit-image's truncation, an 11-pixel window
K1, K2 = 0.01, 0.03
CHUNK = 64  # images per SSIM batch: bounded memory at 224 px, in float64


def gaussian_1d(radius: int = SSIM_RADIUS, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian; the 2-D window is its outer product with itself, so the
    filter runs as two 11-tap passes instead of one 121-tap one (11 times less work at
    224 px)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_per_image(clean: torch.Tensor, triggered: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of each image (over its channels and window positions), float64, shape (N,).

    Only windows wholly inside the image are used (valid convolution). scikit-image filters
    with reflected borders and then crops (window - 1) / 2 pixels from each side before taking
    the mean, which leaves exactly these windows: the two agree without choosing a border."""
    n, channels, height, width = clean.shape
    side = 2 * SSIM_RADIUS + 1
    if min(height, width) < side:
        raise BenchbdError(f"SSIM needs images of at least {side} px, got {height} x {width}")
    g = gaussian_1d()
    rows = g.view(1, 1, side, 1).expand(channels, 1, side, 1).contiguous()
    cols = g.view(1, 1, 1, side).expand(channels, 1, 1, side).contiguous()
    c1, c2 = (K1 * PEAK) ** 2, (K2 * PEAK) ** 2
    out = []
    for start in range(0, n, CHUNK):
        x = clean[start : start + CHUNK].double()
        y = triggered[start : start + CHUNK].double()
        stacked = torch.cat([x, y, x * x, y * y, x * y])
        stats = F.conv2d(F.conv2d(stacked, rows, groups=channels), cols, groups=channels)
        mx, my, xx, yy, xy = stats.split(len(x))
        vx, vy, cxy = xx - mx * mx, yy - my * my, xy - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        out.append(s.mean(dim=(1, 2, 3)))
    return torch.cat(out)


def trigger_visibility(clean_uint8: torch.Tensor, triggered_uint8: torch.Tensor) -> dict:
    """PSNR, SSIM and L-inf of triggered images against their clean originals, each the mean
    over images of the per-image figure (BackdoorBench's convention):

    - `psnr_db`: 10 log10(255^2 / MSE) per image, each capped at `PSNR_CAP_DB` (100 dB) so that
      an unchanged image gives a finite, JSON-writable number instead of infinity;
    - `ssim`: per-image SSIM (see `ssim_per_image`), 1.0 for identical images;
    - `linf`: the largest absolute pixel difference per image, as a fraction of 255;
    - `n_images`: how many images the means are over.

    Both batches are uint8 (N, C, H, W) with the same shape."""
    if clean_uint8.shape != triggered_uint8.shape or clean_uint8.ndim != 4:
        raise BenchbdError(
            "clean and triggered images must be batches (N, C, H, W) of the same shape, got "
            f"{tuple(clean_uint8.shape)} and {tuple(triggered_uint8.shape)}"
        )
    if clean_uint8.dtype != torch.uint8 or triggered_uint8.dtype != torch.uint8:
        raise BenchbdError("clean and triggered images must be uint8")
    if len(clean_uint8) == 0:
        raise BenchbdError("no images to measure a trigger's visibility on")
    diff = clean_uint8.double() - triggered_uint8.double()
    mse = diff.pow(2).flatten(1).mean(dim=1)
    psnr = [
        PSNR_CAP_DB if m == 0 else min(PSNR_CAP_DB, 10 * math.log10(PEAK**2 / m))
        for m in mse.tolist()
    ]
    linf = diff.abs().flatten(1).amax(dim=1) / PEAK
    return {
        "psnr_db": sum(psnr) / len(psnr),
        "ssim": ssim_per_image(clean_uint8, triggered_uint8).mean().item(),
        "linf": linf.mean().item(),
        "n_images": len(clean_uint8),
    }
