"""The trigger-visibility figures on known cases and against a direct computation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from benchbd.core.errors import BenchbdError
from benchbd.engine.visibility import PSNR_CAP_DB, ssim_per_image, trigger_visibility


def images(seed: int, n: int = 4, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)  # fmt: skip


def direct_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of one (C, H, W) image, window by window, straight from Wang et al. (2004)."""
    r, sigma = 5, 1.5
    g = np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for c in range(x.shape[0]):
        for i in range(r, x.shape[1] - r):
            for j in range(r, x.shape[2] - r):
                a = x[c, i - r : i + r + 1, j - r : j + r + 1].astype(float)
                b = y[c, i - r : i + r + 1, j - r : j + r + 1].astype(float)
                ma, mb = (w * a).sum(), (w * b).sum()
                va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
                cov = (w * (a - ma) * (b - mb)).sum()
                values.append(((2 * ma * mb + c1) * (2 * cov + c2))
                              / ((ma**2 + mb**2 + c1) * (va + vb + c2)))  # fmt: skip
    return float(np.mean(values))


def test_identical_images_are_invisible_and_json_writable():
    x = images(0)
    v = trigger_visibility(x, x.clone())
    assert v["psnr_db"] == PSNR_CAP_DB and v["linf"] == 0.0 and v["n_images"] == 4
    assert v["ssim"] == pytest.approx(1.0, abs=1e-12)
    json.dumps(v, allow_nan=False)


def test_independent_noise_has_ssim_near_zero_and_full_linf():
    v = trigger_visibility(images(1, size=32), images(2, size=32))
    assert abs(v["ssim"]) < 0.05
    assert v["linf"] > 0.9
    assert v["psnr_db"] == pytest.approx(10 * math.log10(255**2 / (255**2 / 6)), abs=0.3)


def test_psnr_and_linf_of_a_known_edit():
    x = torch.full((2, 3, 16, 16), 100, dtype=torch.uint8)
    y = x.clone()
    y[0] += 1  # MSE 1 everywhere: 48.13 dB, L-inf 1/255
    y[1, :, 0, 0] = 151  # one pixel of 768 values off by 51 in each channel
    v = trigger_visibility(x, y)
    psnr1 = 10 * math.log10(255**2 / (51**2 * 3 / 768))
    assert v["psnr_db"] == pytest.approx((10 * math.log10(255**2) + psnr1) / 2)
    assert v["linf"] == pytest.approx((1 + 51) / 255 / 2)


def test_ssim_matches_the_window_by_window_definition():
    x = images(3, n=2, size=14)
    y = x.int() + torch.randint(-40, 41, x.shape, generator=torch.Generator().manual_seed(4))
    y = y.clamp(0, 255).to(torch.uint8)
    got = ssim_per_image(x, y)
    for k in range(2):
        assert got[k].item() == pytest.approx(direct_ssim(x[k].numpy(), y[k].numpy()), abs=1e-10)
    assert 0.1 < got.mean().item() < 0.99


def test_bad_inputs_are_refused():
    with pytest.raises(BenchbdError, match="same shape"):
        trigger_visibility(images(0), images(0, n=3))
    with pytest.raises(BenchbdError, match="at least 11"):
        trigger_visibility(images(0, size=8), images(1, size=8))
