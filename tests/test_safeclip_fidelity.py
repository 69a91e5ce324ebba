"""SafeCLIP against its authors' code, re-derived here from BigML-CS-UCLA/SafeCLIP at commit
91488ce3175d3cbf46e6f0dbca3090633389842c (src/main.py, src/train.py, src/samplers.py,
utils/augment_image.py) and compared with benchbd's functions on small random inputs.

Listed in docs/fidelity.md, and the one thing allowed to differ here: their safe share is a
float32 tensor, benchbd's a float64 number, so a later epoch's safe set may hold one pair more
or fewer (never a different ranking)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from benchbd.defenses.cleanclip import inmodal_loss
from benchbd.defenses.safeclip import (
    SafeCLIPParams,
    SafeSchedule,
    SimCLRViews,
    cross_aug_clip_loss,
    views_inmodal_loss,
)
from sklearn.mixture import GaussianMixture


def their_clean_probabilities(cos_sim: np.ndarray) -> np.ndarray:
    """src/samplers.py lines 135-161 (fit_gmm_to_cos_sim): a two-component mixture with
    random_state 0; the posterior of the component with the larger mean."""
    values = np.array(cos_sim).reshape(-1, 1)
    gmm = GaussianMixture(n_components=2, random_state=0).fit(values)
    return gmm.predict_proba(values)[:, np.argmax(gmm.means_)]


def their_safe_sets(epochs: list[np.ndarray], growth: float, cap: float) -> list[set[int]]:
    """src/main.py lines 182-215, the split epochs: sort the pairs by similarity (descending),
    fit the mixture on that order, sort again by posterior; the first split epoch keeps the
    pairs at posterior 0.9 or more and sets the ratio to their share (a float32 tensor), each
    later one keeps the first int(N * ratio) by posterior; after every split epoch the ratio
    grows by `update_filter_ratio` up to `cap_filter_ratio`."""
    sets, filter_ratio = [], None
    for epoch, similarities in enumerate(epochs):
        similarities = torch.from_numpy(similarities)
        sample_indices = torch.arange(len(similarities))
        sorted_indices = torch.argsort(similarities, descending=True)
        new_indices = sample_indices[sorted_indices]
        new_sim_np = similarities[sorted_indices]
        clean_probabilities = their_clean_probabilities(new_sim_np.numpy())
        # Theirs leaves `stable` at its default; equal posteriors keep the similarity order
        # either way on CPU, and `stable` says so.
        gmm_sorted_indices = torch.argsort(
            torch.tensor(clean_probabilities), descending=True, stable=True
        )
        gmm_indices = new_indices[gmm_sorted_indices]
        n = len(similarities)
        if epoch == 0:
            new_weights = torch.tensor([0 if i < 0.9 else i for i in clean_probabilities])
            multimodal_indices = new_indices[(new_weights > 0)]
            filter_ratio = (new_weights > 0).sum() / n
        else:
            multimodal_indices = gmm_indices[: int(n * filter_ratio)]
        filter_ratio = min(filter_ratio + growth, cap)
        sets.append(set(multimodal_indices.tolist()))
    return sets


def drifting_similarities(n: int, epochs: int, seed: int) -> list[np.ndarray]:
    """Similarities of a model learning over epochs: most pairs matched and rising, a few
    poisoned ones low, plus per-epoch noise."""
    rng = np.random.default_rng(seed)
    out = []
    for epoch in range(epochs):
        values = rng.normal(0.2 + 0.05 * epoch, 0.08, n)
        values[: n // 20] = rng.normal(0.0, 0.05, n // 20)
        out.append(values)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("growth", "cap"), [(0.01, 0.85), (0.1, 0.9), (0.05, 0.5)])
def test_the_split_rule_matches_theirs(seed, growth, cap):
    epochs = drifting_similarities(600, 8, seed)
    theirs = their_safe_sets(epochs, growth, cap)
    schedule = SafeSchedule(SafeCLIPParams(growth=growth, cap=cap, safe_probability=0.9))
    ours = [set(np.flatnonzero(schedule.next_safe(e).numpy()).tolist()) for e in epochs]
    assert ours[0] == theirs[0]  # the first split: the same pairs, exactly
    for mine, their in zip(ours[1:], theirs[1:], strict=True):
        small, large = sorted((mine, their), key=len)
        assert small <= large and len(large) - len(small) <= 1  # float32 share, listed


def test_the_first_split_is_the_posterior_rule_not_a_share():
    """Their published code never starts from a share: with `start` at its default the first
    safe set is exactly the pairs at posterior 0.9, however few."""
    epochs = drifting_similarities(600, 1, 5)
    schedule = SafeSchedule(SafeCLIPParams())
    probability = their_clean_probabilities(np.sort(epochs[0])[::-1])
    expected = int((probability >= 0.9).sum())
    assert int(schedule.next_safe(epochs[0]).sum()) == expected


def embeddings(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1)


def their_loss(image, text, aug_image, aug_text, scale, inmodal: bool) -> torch.Tensor:
    """src/train.py lines 11-83 (get_loss) with cross_aug on and no memory bank: the first
    half of the batch is the first views, the second half the augmented second views."""
    criterion = torch.nn.CrossEntropyLoss()
    target = torch.arange(len(image))
    if inmodal:
        logits_image_per_augmented_image = scale * aug_image @ image.t()
        logits_text_per_augmented_text = scale * aug_text @ text.t()
        return (criterion(logits_image_per_augmented_image, target)
                + criterion(logits_text_per_augmented_text, target)) / 2  # fmt: skip
    logits_text_per_image = scale * image @ aug_text.t()
    logits_image_per_text = scale * text @ aug_image.t()
    return (criterion(logits_text_per_image, target)
            + criterion(logits_image_per_text, target)) / 2  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_split_epoch_clip_loss_is_their_cross_augmented_loss(seed):
    i1, t1, i2, t2 = (embeddings(12, 16, seed * 4 + k) for k in range(4))
    scale = torch.tensor(14.3)
    ours = cross_aug_clip_loss(i1, t1, i2, t2, scale)
    assert torch.allclose(ours, their_loss(i1, t1, i2, t2, scale, inmodal=False), atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_inmodal_loss_is_theirs_in_their_orientation(seed):
    i1, t1, i2, t2 = (embeddings(12, 16, seed * 4 + k) for k in range(4))
    scale = torch.tensor(14.3)
    ours = views_inmodal_loss(i1, t1, i2, t2, scale)
    assert torch.allclose(ours, their_loss(i1, t1, i2, t2, scale, inmodal=True), atol=1e-6)


def test_the_inmodal_orientation_matters():
    """Their in-modal logits are views x originals, CleanCLIP's originals x views: over one
    batch the two losses differ, so the orientation is not a free choice."""
    i1, t1, i2, t2 = (embeddings(12, 16, k) for k in range(4))
    scale = torch.tensor(14.3)
    transposed = (inmodal_loss(i1, i2, scale) + inmodal_loss(t1, t2, scale)) / 2
    theirs = their_loss(i1, t1, i2, t2, scale, inmodal=True)
    assert abs(transposed.item() - theirs.item()) > 1e-3


def test_the_views_are_seeded_per_draw_and_keep_the_batch_shape():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    views = SimCLRViews()
    a, b, c = views(images, 1), views(images, 1), views(images, 2)
    assert a.shape == images.shape and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, images)
