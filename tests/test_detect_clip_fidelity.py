"""Detect-CLIP's detectors (Huang et al., ICLR 2025) against their authors' computation.

Each `authors_*` function below is an independent re-derivation, in torch, of the scoring code
of HanxunH/Detect-CLIP-Backdoor-Samples (commit ff2399a), file and lines named at each. It
takes what that code takes: the batch's image features V and, in the image-text setting, its
caption features T, raw (`encode_image` / `encode_text` without normalisation, as
extract_bd_scores.py calls them); the batch is its own reference set. benchbd's score
functions receive the same numbers as queries, a reference matrix and each query's own rows,
and must agree to float tolerance wherever docs/fidelity.md lists no deviation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchbd.params import build
from defenses.kdistance import KDistance

EXACT = "donot_use_mm_for_euclid_dist"  # extract_bd_scores.py line 108: exact distances


def pairwise_without_own(data: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """k_distance.py lines 6-13 (`get_pair_wise_distance`, one process: offset 0): all
    distances from each row of `data` to `reference`, the diagonal (row i to reference i)
    removed, so (b, R - 1)."""
    b = data.shape[0]
    r = torch.cdist(data, reference, p=2, compute_mode=EXACT)
    mask = torch.zeros((b, reference.shape[0]), dtype=torch.bool)
    mask = torch.diagonal_scatter(mask, torch.ones(b, dtype=torch.bool), 0)
    return r[~mask].view(b, -1)


def authors_sorted(v: torch.Tensor, t: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """k_distance.py lines 24-47: the sorted distances (and their column indices) from each
    image to the other images and, with captions, to the other captions (own caption left out
    by the same diagonal mask), the two blocks side by side."""
    if t is None:
        d = pairwise_without_own(v, v)
    else:
        d = torch.cat([pairwise_without_own(v, v), pairwise_without_own(v, t)], dim=1)
    return torch.sort(d, dim=1)


def authors_kdistance(v: torch.Tensor, t: torch.Tensor | None, k: int) -> np.ndarray:
    """k_distance.py line 48: `a[:, self.k]`, 0-indexed after the own rows are removed."""
    a, _ = authors_sorted(v, t)
    return a[:, k].numpy()


def random_features(n: int = 60, d: int = 12, seed: int = 0, spread: float = 0.3):
    """Raw features whose norms spread by about `spread`, as raw CLIP embeddings do."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=gen, dtype=torch.float64)
    t = torch.randn(n, d, generator=gen, dtype=torch.float64) + 0.5 * v
    scale = 1 + spread * torch.rand(n, 1, generator=gen, dtype=torch.float64)
    return v * scale, t * scale.flip(0)


def screen(cls, **params):
    return cls(build(cls.Params, params, cls.__name__))


def own_images(n: int) -> np.ndarray:
    return np.arange(n)[:, None]


@pytest.mark.parametrize("k", [1, 4, 16])
def test_kdistance_is_the_authors_on_images(k):
    v, _ = random_features()
    got = screen(KDistance, k=k).score(v.numpy(), v.numpy(), own_images(len(v)), None)
    np.testing.assert_allclose(got, authors_kdistance(v, None, k), rtol=1e-9)
