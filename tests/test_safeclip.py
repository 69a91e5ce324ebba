"""SafeCLIP's split schedule on known similarities: the first safe set is the mixture's share
or `start`, whichever is larger; it grows by `growth` a epoch up to `cap`; the low-similarity
(poisoned) pairs stay out of the CLIP loss; `start` at its default leaves the recorded
parameters, and so every fingerprint, as they were."""

from __future__ import annotations

import numpy as np
import pytest
from benchbd.defenses.safeclip import SafeCLIPParams, SafeSchedule

from benchbd.core.errors import BenchbdError


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
    schedule = SafeSchedule(SafeCLIPParams(start=0.5, safe_probability=0.99))
    safe = schedule.next_safe(unimodal())
    assert safe.float().mean().item() == pytest.approx(0.5)


def test_a_mixture_share_above_start_is_taken():
    similarities = with_poisons()
    schedule = SafeSchedule(SafeCLIPParams(start=0.1, safe_probability=0.9, cap=1.0))
    safe = schedule.next_safe(similarities)
    share = safe.float().mean().item()
    assert share > 0.95  # nearly every matched pair is in the high component
    assert not safe[:60].any()


def test_the_safe_set_grows_by_growth_up_to_cap():
    schedule = SafeSchedule(SafeCLIPParams(start=0.5, growth=0.1, cap=0.75))
    shares = [schedule.next_safe(unimodal()).float().mean().item() for _ in range(5)]
    assert [round(share, 4) for share in shares] == [0.5, 0.6, 0.7, 0.75, 0.75]
    assert schedule.shares == [0.5, 0.6, 0.7, 0.75, 0.75]


def test_the_poisons_stay_out_of_the_safe_set_as_it_grows():
    similarities = with_poisons()
    schedule = SafeSchedule(SafeCLIPParams(start=0.5, growth=0.1, cap=0.95))
    for _ in range(6):
        assert not schedule.next_safe(similarities)[:60].any()
    assert schedule.shares[-1] == 0.95


def test_start_at_its_default_is_not_recorded_so_fingerprints_stay():
    assert "start" not in SafeCLIPParams().to_dict()
    assert SafeCLIPParams(start=0.5).to_dict()["start"] == 0.5


def test_start_is_a_share():
    with pytest.raises(BenchbdError, match="start"):
        SafeCLIPParams(start=1.5)
