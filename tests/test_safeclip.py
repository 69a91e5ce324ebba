"""SafeCLIP's split schedule on known similarities: the first safe set is the mixture's share
or `start`, whichever is larger; it grows by `growth` a epoch up to `cap`; the safe rows are
always the most similar pairs, so the low-similarity (poisoned) pairs stay out of the CLIP loss."""

from __future__ import annotations

import numpy as np
import pytest

from benchbd.errors import BenchbdError
from defenses.safeclip import SafeCLIPParams, SafeSchedule


def unimodal(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Similarities with no second mode: the mixture deems almost none safe at posterior 0.9."""
    return np.random.default_rng(seed).normal(0.3, 0.05, n)


def with_poisons(n: int = 2000, poisons: int = 60, seed: int = 0) -> np.ndarray:
    """Most pairs matched (high similarity), a few mismatched ones far below them."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.6, 0.05, n)
    values[:poisons] = rng.normal(0.0, 0.05, poisons)
    return values


def test_a_mixture_that_finds_no_safe_pair_still_starts_the_safe_set_at_start():
    schedule = SafeSchedule(SafeCLIPParams(start=0.5, safe_probability=0.99), seed=0)
    safe = schedule.next_safe(unimodal())
    assert safe.float().mean().item() == pytest.approx(0.5)


def test_a_mixture_share_above_start_is_taken():
    similarities = with_poisons()
    schedule = SafeSchedule(SafeCLIPParams(start=0.1, safe_probability=0.9, cap=1.0), seed=0)
    safe = schedule.next_safe(similarities)
    share = safe.float().mean().item()
    assert share > 0.95  # nearly every matched pair is in the high component
    assert not safe[:60].any()
    capped = SafeSchedule(SafeCLIPParams(start=0.1, cap=0.8), seed=0).next_safe(similarities)
    assert capped.float().mean().item() == pytest.approx(0.8)


def test_the_safe_set_grows_by_growth_up_to_cap_and_holds_the_most_similar_pairs():
    similarities = unimodal()
    schedule = SafeSchedule(SafeCLIPParams(start=0.5, growth=0.1, cap=0.75), seed=0)
    shares = []
    for _ in range(5):
        safe = schedule.next_safe(similarities)
        shares.append(round(safe.float().mean().item(), 4))
        assert similarities[safe.numpy()].min() >= similarities[~safe.numpy()].max()
    assert shares == [0.5, 0.6, 0.7, 0.75, 0.75]
    assert schedule.shares == shares


def test_start_and_cap_are_shares():
    with pytest.raises(BenchbdError, match="start"):
        SafeCLIPParams(start=1.5)
