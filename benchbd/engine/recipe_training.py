"""Training a model with a run's pretraining recipe, then keeping it in the model cache: the one
way every model a run trains is made (the poisoned model, a screen's or a pretraining defense's
model, the attacker's surrogate, the defender's clean model), so that each is trained with the
same recipe, objective and seed rules, and cached as soon as it is whole."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from benchbd.engine.data.pairs import PairSet, ZeroShotTask
from benchbd.engine.model import ClipBundle
from benchbd.engine.objectives import pretraining_objective
from benchbd.engine.step_report import ProgressFn
from benchbd.engine.train import EpochHook, Objective, TrainConfig, train


def train_and_cache(
    clip: ClipBundle,
    pairs: PairSet,
    recipe: TrainConfig,
    *,
    seed: int,
    stage: str,
    task: ZeroShotTask,
    progress: ProgressFn | None,
    cache: Callable[[ClipBundle], None],
    objective: Objective | None = None,
    epoch_start: EpochHook | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> None:
    """Train `clip` in place on `pairs` with the run's `recipe` and the stage's `seed`, then
    hand it to `cache` (a `benchbd.engine.model_cache` store with its entry bound).

    The objective is the recipe's (`pretraining_objective`: the CLIP loss, plus in-modal terms
    when the recipe sets `inmodal_weight`) unless one is given, which replaces it (a
    pretraining defense's). `overrides` replaces settings of the recipe for this training alone
    (a pretraining defense's own learning rate, say); the default objective stays the run
    recipe's."""
    training = replace(recipe, **overrides) if overrides else recipe
    if objective is None:
        objective = pretraining_objective(recipe, task, seed)
    train(clip, pairs, training, seed=seed, stage=stage, progress=progress, objective=objective,
          epoch_start=epoch_start)  # fmt: skip
    cache(clip)
