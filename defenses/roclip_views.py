"""RoCLIP's image views: the public code's `cross_aug` transform (model/utils/augment_image.py:
horizontal flip, RandomResizedCrop, ColorJitter(0.5, 0.5, 0.5, 0.1) with p 0.8, grayscale with
p 0.2, GaussianBlur with a 21 px kernel at 224 px), drawn for every image on its own.

torchvision's transforms draw one set of random parameters per call, so a batch would share one
crop and one colour change, and a call per image costs 0.43 s a step of 64 digits (a whole
run's pretraining three times over). Here each image's parameters are drawn as torchvision
draws them and the operations are applied to the whole batch at once. The blur's kernel and
sigma scale with the image side (21 px and sigma 0.1-2 at 224 px: 3 px and 0.014-0.29 at 32).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CROP_SCALE = (0.08, 1.0)  # torchvision's RandomResizedCrop defaults, as the public code uses
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = (0.5, 0.5, 0.5, 0.1)  # brightness, contrast, saturation, hue
JITTER_P, GRAY_P = 0.8, 0.2
BLUR_KERNEL_224, BLUR_SIGMA_224 = 21, (0.1, 2.0)


def crop_boxes(n: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 4) boxes (top, left, height, width) as RandomResizedCrop.get_params draws them for a
    square side x side image: ten tries of a scale and a log-uniform ratio, the first that
    fits; the whole image when none does (its ratio, 1, lies in the range)."""
    area = side * side
    scale = torch.empty(n, 10).uniform_(*CROP_SCALE, generator=generator) * area
    log_ratio = torch.empty(n, 10).uniform_(*map(math.log, CROP_RATIO), generator=generator)
    ratio = log_ratio.exp()
    w = (scale * ratio).sqrt().round().long()
    h = (scale / ratio).sqrt().round().long()
    fits = (w > 0) & (w <= side) & (h > 0) & (h <= side)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.zeros(n, dtype=torch.long))
    rows = torch.arange(n)
    w = torch.where(fits.any(1), w[rows, first], torch.full((n,), side))
    h = torch.where(fits.any(1), h[rows, first], torch.full((n,), side))
    top = (torch.rand(n, generator=generator) * (side - h + 1)).floor().long()
    left = (torch.rand(n, generator=generator) * (side - w + 1)).floor().long()
    return torch.stack([top, left, h, w], dim=1)


def resized_crops(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Each image's box resized (bilinear, torchvision's `resized_crop` without antialias:
    source coordinates clamped to the box) back to the image's side."""
    n, _, side, _ = images.shape
    top, left, h, w = (v.float().view(n, 1) for v in boxes.T)
    out = torch.arange(side, dtype=torch.float32).view(1, side) + 0.5
    ys = top + ((out * h / side - 0.5).clamp(min=0)).minimum(h - 1)
    xs = left + ((out * w / side - 0.5).clamp(min=0)).minimum(w - 1)
    grid = torch.stack([xs.view(n, 1, side).expand(n, side, side),
                        ys.view(n, side, 1).expand(n, side, side)], dim=-1)  # fmt: skip
    grid = 2 * grid / (side - 1) - 1  # pixel centres, align_corners=True
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=True)  # fmt: skip


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma, torchvision's weights, one channel."""
    r, g, b = images.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(1)
    maxc, minc = images.max(1).values, images.min(1).values
    equal = maxc == minc
    chroma = maxc - minc
    ones = torch.ones_like(maxc)
    s = chroma / torch.where(equal, ones, maxc)
    divisor = torch.where(equal, ones, chroma)
    rc, gc, bc = (maxc - r) / divisor, (maxc - g) / divisor, (maxc - b) / divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack([h, s, maxc], dim=1)


def hsv_to_rgb(images: torch.Tensor) -> torch.Tensor:
    h, s, v = images.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p = (v * (1 - s)).clamp(0, 1)
    q = (v * (1 - s * f)).clamp(0, 1)
    t = (v * (1 - s * (1 - f))).clamp(0, 1)
    mask = (i.unsqueeze(1) == torch.arange(6).view(1, 6, 1, 1)).to(images.dtype)
    channels = [torch.stack(c, dim=1) for c in ((v, q, p, p, t, v), (t, v, v, q, p, p),
                                                 (p, p, t, v, v, q))]  # fmt: skip
    return torch.stack([(mask * c).sum(1) for c in channels], dim=1)


def color_jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """ColorJitter(0.5, 0.5, 0.5, 0.1) on the images drawn to get it (p 0.8), each image with
    its own factors and its own order of the four operations, as torchvision draws them."""
    n = len(images)
    apply = torch.rand(n, generator=generator) < JITTER_P
    b, c, s, hue = JITTER
    factors = [torch.empty(n).uniform_(1 - b, 1 + b, generator=generator),
               torch.empty(n).uniform_(1 - c, 1 + c, generator=generator),
               torch.empty(n).uniform_(1 - s, 1 + s, generator=generator),
               torch.empty(n).uniform_(-hue, hue, generator=generator)]  # fmt: skip
    order = torch.stack([torch.randperm(4, generator=generator) for _ in range(n)])
    out = images.clone()
    for position in range(4):
        for op in range(4):
            rows = torch.nonzero(apply & (order[:, position] == op)).flatten()
            if len(rows):
                out[rows] = _jitter_op(out[rows], op, factors[op][rows])
    return out


def _jitter_op(images: torch.Tensor, op: int, factor: torch.Tensor) -> torch.Tensor:
    k = factor.view(-1, 1, 1, 1)
    if op == 0:  # brightness: blend with black
        return (images * k).clamp(0, 1)
    if op == 1:  # contrast: blend with the mean grey level
        mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
        return (k * images + (1 - k) * mean).clamp(0, 1)
    if op == 2:  # saturation: blend with the grey image
        return (k * images + (1 - k) * grayscale(images)).clamp(0, 1)
    hsv = rgb_to_hsv(images)
    hsv[:, 0] = torch.remainder(hsv[:, 0] + factor.view(-1, 1, 1), 1.0)
    return hsv_to_rgb(hsv)


def gaussian_blur(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """GaussianBlur with the public code's kernel and sigma range scaled to the image side,
    sigma drawn per image, reflect padding (torchvision's)."""
    n, ch, side, _ = images.shape
    kernel = max(3, int(round(BLUR_KERNEL_224 * side / 224)) | 1)
    low, high = (s * side / 224 for s in BLUR_SIGMA_224)
    sigma = torch.empty(n).uniform_(low, high, generator=generator)
    x = torch.linspace(-(kernel // 2), kernel // 2, kernel)
    weights = torch.exp(-0.5 * (x.view(1, -1) / sigma.view(-1, 1)) ** 2)
    weights = (weights / weights.sum(1, keepdim=True)).repeat_interleave(ch, dim=0)
    flat = images.reshape(1, n * ch, side, side)
    pad = kernel // 2
    flat = F.pad(flat, (pad, pad, pad, pad), mode="reflect")
    flat = F.conv2d(flat, weights.view(n * ch, 1, 1, kernel), groups=n * ch)
    flat = F.conv2d(flat, weights.view(n * ch, 1, kernel, 1), groups=n * ch)
    return flat.view(n, ch, side, side)


class RoCLIPImageViews:
    """The public code's image augmentation on uint8 (N, 3, H, W) square batches, per image."""

    def __call__(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        n, _, side, _ = images.shape
        out = images.float() / 255
        flip = (torch.rand(n, generator=generator) < 0.5).view(n, 1, 1, 1)
        out = torch.where(flip, out.flip(-1), out)
        out = resized_crops(out, crop_boxes(n, side, generator))
        out = color_jitter(out, generator)
        gray = (torch.rand(n, generator=generator) < GRAY_P).view(n, 1, 1, 1)
        out = torch.where(gray, grayscale(out).expand_as(out), out)
        out = gaussian_blur(out, generator)
        return (out * 255).round().clamp(0, 255).to(torch.uint8)
