"""Every model a run trains goes through `train_and_cache`: trained with the run's recipe and the
stage's seed, then handed to the model cache; the same recipe and seed give the same weights,
and a pretraining defense's own settings change the training but not the default objective."""

from __future__ import annotations

from functools import partial

import torch

from benchbd.engine import model_cache
from benchbd.engine.model import create_clip
from benchbd.engine.recipe_training import train_and_cache
from benchbd.engine.train import TrainConfig

RECIPE = TrainConfig(epochs=1, batch_size=32, warmup_steps=2)


def trained(pairs, task, seed: int = 7, **extra):
    clip = create_clip(seed=0)
    kept = []
    steps = []
    train_and_cache(clip, pairs, RECIPE, seed=seed, stage="test", task=task,
                    progress=steps.append, cache=kept.append, **extra)  # fmt: skip
    return clip, kept, steps


def weights(clip) -> list[torch.Tensor]:
    return [p.detach().clone() for p in clip.model.parameters()]


def test_the_model_is_trained_with_the_recipe_and_then_cached(tiny_data):
    pairs = tiny_data.train.subset(list(range(64)))
    untrained = weights(create_clip(seed=0))
    clip, kept, steps = trained(pairs, tiny_data.task)
    assert kept == [clip]  # handed to the cache once, after training
    assert len(steps) == RECIPE.steps(len(pairs)) and steps[-1].stage == "test"
    assert any(not torch.equal(a, b) for a, b in zip(untrained, weights(clip), strict=True))
    again, _, _ = trained(pairs, tiny_data.task)  # same recipe, same seed: same weights
    assert all(torch.equal(a, b) for a, b in zip(weights(clip), weights(again), strict=True))


def test_overrides_change_the_training_and_the_model_cache_keeps_the_result(tiny_data):
    pairs = tiny_data.train.subset(list(range(64)))
    plain, _, plain_steps = trained(pairs, tiny_data.task)
    faster, _, faster_steps = trained(pairs, tiny_data.task, overrides={"epochs": 2})
    assert len(faster_steps) == 2 * len(plain_steps)
    assert any(not torch.equal(a, b) for a, b in zip(weights(plain), weights(faster), strict=True))

    clip = create_clip(seed=0)
    cache = partial(model_cache.store_surrogate, "recipe-test")
    train_and_cache(clip, pairs, RECIPE, seed=7, stage="test", task=tiny_data.task,
                    progress=None, cache=cache)  # fmt: skip
    loaded = create_clip(seed=1)
    assert model_cache.lookup_surrogate("recipe-test", loaded).found
    assert all(torch.equal(a, b) for a, b in zip(weights(clip), weights(loaded), strict=True))
