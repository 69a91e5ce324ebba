"""The harness: schedule, optimizer groups, logit-scale clamp, augmentation, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from benchbd.engine.model import create_clip
from benchbd.engine.train import TrainConfig, build_optimizer, lr_at, random_shift, train


def test_warmup_is_linear_and_cosine_ends_at_zero():
    total, warmup, base = 100, 10, 1.0
    lrs = [lr_at(s, total, base, warmup) for s in range(total)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10], strict=True))
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lr_at(total, total, base, warmup) == pytest.approx(0.0)
    assert lrs[-1] < 0.01 and max(lrs) <= base


def test_the_schedule_shape_is_checked_and_recorded_only_when_not_the_default():
    from benchbd.core.errors import BenchbdError

    assert "schedule" not in TrainConfig().to_dict()
    assert TrainConfig(schedule="linear-cosine").to_dict()["schedule"] == "linear-cosine"
    with pytest.raises(BenchbdError, match="schedule must be one of cosine, linear-cosine"):
        TrainConfig(schedule="step")
    lrs = [lr_at(s, 10, 1.0, 3, "linear-cosine") for s in range(10)]
    assert lrs[0] == 1.0 and lrs[4] == pytest.approx(0.1) == lrs[5] and lrs[-1] < lrs[6] < 0.1


def test_no_weight_decay_on_biases_norms_and_logit_scale():
    clip = create_clip(seed=0)
    optimizer = build_optimizer(clip.model, lr=1e-3, weight_decay=0.1)
    decayed, exempt = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and exempt["weight_decay"] == 0.0
    exempt_ids = {id(p) for p in exempt["params"]}
    for name, p in clip.model.named_parameters():
        if p.ndim < 2 or name == "logit_scale":
            assert id(p) in exempt_ids, name
    assert all(p.ndim >= 2 for p in decayed["params"])


def test_random_shift_keeps_shape_dtype_and_content_range():
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    shifted = random_shift(images, 0.125, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    again = random_shift(images, 0.125, torch.Generator().manual_seed(0))
    assert torch.equal(shifted, again)
    assert not torch.equal(shifted, images)
    assert torch.equal(random_shift(images, 0.0, torch.Generator()), images)


@pytest.mark.slow
def test_training_is_seeded_and_clamps_the_logit_scale(tiny_data):
    config = TrainConfig(epochs=1, batch_size=128, lr=1e-3, warmup_steps=2)
    pairs = tiny_data.train.subset(torch.arange(256))
    runs = []
    for _ in range(2):
        clip = create_clip(seed=1)
        with torch.no_grad():
            clip.model.logit_scale.fill_(math.log(500.0))
        losses = train(clip, pairs, config, seed=5)
        runs.append((losses, clip.model.state_dict()))
        assert clip.model.logit_scale.item() <= math.log(100.0) + 1e-6
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_fewer_pairs_than_a_batch_is_an_error(tiny_data):
    clip = create_clip(seed=0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(clip, tiny_data.train.subset(torch.arange(10)), TrainConfig(batch_size=64), seed=0)


@pytest.mark.slow
def test_the_tiny_vit_config_trains_too(tiny_data):
    clip = create_clip("benchbd-vit-tiny", seed=0)
    assert clip.image_size == 32
    losses = train(clip, tiny_data.train.subset(torch.arange(64)), TrainConfig(
        epochs=2, batch_size=32, warmup_steps=1), seed=0)  # fmt: skip
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
