"""The training loop's hooks for pretraining defenses: an epoch hook is called at each epoch's
start, sees the model as trained so far, may change captions but not rows, and leaves the batch
order and shifts of a run without it untouched; batches carry their rows and epoch."""

from __future__ import annotations

import pytest
import torch

from benchbd.core.errors import BenchbdError
from benchbd.engine.model import create_clip
from benchbd.engine.train import TrainConfig, contrastive_objective, train

CONFIG = TrainConfig(epochs=3, batch_size=32, lr=1e-3, warmup_steps=1)


@pytest.fixture
def pairs(tiny_data):
    return tiny_data.train.subset(torch.arange(64))


def test_a_hook_that_changes_nothing_trains_the_same_weights(pairs):
    plain, hooked = create_clip(seed=1), create_clip(seed=1)
    calls = []

    def hook(clip, epoch, given):
        calls.append((epoch, clip.model.training, torch.is_grad_enabled()))
        return given

    first = train(plain, pairs, CONFIG, seed=5)
    second = train(hooked, pairs, CONFIG, seed=5, epoch_start=hook)
    assert first == second
    state = plain.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in hooked.model.state_dict().items())
    # once per epoch, from 0, in eval mode without gradients
    assert calls == [(0, False, False), (1, False, False), (2, False, False)]


def test_batches_carry_their_rows_and_epoch_and_the_hooks_captions(pairs):
    seen = []

    def hook(clip, epoch, given):
        return given.with_changes(captions=[f"epoch {epoch} row {i}" for i in range(len(given))])

    def objective(clip, batch):
        seen.append((batch.epoch, batch.rows.tolist(), batch.captions))
        return contrastive_objective(clip, batch)

    train(create_clip(seed=1), pairs, CONFIG, seed=5, objective=objective, epoch_start=hook)
    assert [epoch for epoch, _, _ in seen] == [0, 0, 1, 1, 2, 2]
    for epoch, rows, captions in seen:
        assert captions == [f"epoch {epoch} row {i}" for i in rows]
    # each epoch visits every row once (64 pairs, two batches of 32)
    assert sorted(seen[0][1] + seen[1][1]) == list(range(64))


def test_a_hook_may_not_change_the_rows(pairs):
    with pytest.raises(BenchbdError, match="may change captions, not rows"):
        train(create_clip(seed=1), pairs, CONFIG, seed=5,
              epoch_start=lambda clip, epoch, given: given.subset(torch.arange(40)))  # fmt: skip
