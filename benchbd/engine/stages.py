"""The model a defense hands to its `apply`, by the stage it declares.

A finetune-stage defense gets the poisoned model. A screening defense scores the poisoned
training pairs; a fresh model is then pretrained on the rows it kept, with the run's recipe and
seeds, and the screen's scores are measured against the rows the attack poisoned. A pretraining
defense pretrains a fresh model on the poisoned pairs through the one training loop, with its
own objective and per-epoch data choice. Either model is cached under its own fingerprint
(`planning.stage_fingerprint`), so a rerun (on the other split, say) trains nothing again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import torch

from benchbd.core.errors import BenchbdError
from benchbd.core.seeds import substream
from benchbd.engine import model_cache
from benchbd.engine.data.pairs import BenchmarkData, PairSet
from benchbd.engine.detection import detection_metrics
from benchbd.engine.evaluate import Metrics
from benchbd.engine.input_stage import detect_inputs
from benchbd.engine.model import ClipBundle, create_clip
from benchbd.engine.planning import load_experiment_data, poisoned_fingerprint, stage_fingerprint
from benchbd.engine.plugins import (
    Attack,
    Defense,
    DefenseContext,
    InputDetector,
    PretrainingDefense,
    Screening,
    ScreeningDefense,
    TrainingPairs,
    defenses,
    stage_of,
)
from benchbd.engine.poisoned_model import PoisonedModel, load_poisoned
from benchbd.engine.recipe_training import train_and_cache
from benchbd.engine.run_config import RunConfig
from benchbd.engine.step_report import ProgressFn


@dataclass(frozen=True)
class StagedModel:
    """The model `Defense.apply` receives, and what the result file records of how it came
    about: the stage, the fingerprint of a model trained for it (None for finetune), whether
    that model came from the cache, and a screen's detection numbers and dropped rows."""

    clip: ClipBundle
    stage: str
    fingerprint: str | None = None
    cached: bool = False
    threads: int | None = None  # CPU threads the stage's model was trained with
    detection: dict[str, Any] | None = None
    screen: dict[str, Any] | None = None
    # An input detector's "after" metrics (CA, ASR, RA with flagged inputs rejected), measured
    # by the stage itself, and its threshold and ROC curve (`extra.input_detection`).
    after: Metrics | None = None
    input_detection: dict[str, Any] | None = None

    def extra(self) -> dict[str, Any]:
        """`extra.stage` and `extra.screen` of the result file (nothing for finetune)."""
        if self.stage == "finetune":
            return {}
        found = {"stage": {"stage": self.stage, "model_fingerprint": self.fingerprint,
                           "cached": self.cached, "threads": self.threads}}  # fmt: skip
        if self.screen is not None:
            found["screen"] = self.screen
        if self.input_detection is not None:
            found["input_detection"] = self.input_detection
        return found


@dataclass(frozen=True)
class StageInputs:
    """Everything a stage step may use, gathered once by the pipeline."""

    config: RunConfig
    data: BenchmarkData
    attack: Attack
    defense: Defense
    context: DefenseContext
    poisoned: PoisonedModel
    clip: ClipBundle  # the undefended poisoned model, already measured
    device: torch.device
    note: Callable[[str], None]
    progress: ProgressFn | None


def defended_model(inputs: StageInputs) -> StagedModel:
    """The model the defense's `apply` gets, made as its stage says."""
    steps = {"finetune": _poisoned_as_is, "screen": _screen_and_pretrain,
             "pretrain": _pretrain_with_defense, "input": _detect_inputs}  # fmt: skip
    return steps[stage_of(inputs.defense)](inputs)


def _poisoned_as_is(inputs: StageInputs) -> StagedModel:
    return StagedModel(inputs.clip, "finetune")


def _detect_inputs(inputs: StageInputs) -> StagedModel:
    """Keep the poisoned model; score the evaluation images and reject the flagged ones
    (`benchbd.engine.input_stage`)."""
    assert isinstance(inputs.defense, InputDetector)
    attack = inputs.attack
    parts = dict(attack.trigger_parts()) if attack.poisons else {}
    found = detect_inputs(inputs.defense, inputs.clip, inputs.context, inputs.data.validation,
                          inputs.data.evaluation(inputs.config.split), inputs.data.task,
                          attack.setup.target, attack.apply_trigger if attack.poisons else None,
                          substream(inputs.config.seed, "evaluate"), parts,
                          inputs.config.defense)  # fmt: skip
    return StagedModel(inputs.clip, "input", detection=found.detection, after=found.after,
                       input_detection=found.report)  # fmt: skip


def poisoned_pairs(inputs: StageInputs) -> PairSet:
    """The poisoned training pairs: kept from the attack step, or poisoned again (seeded, so
    the same rows) when the poisoned model came from the cache without running the attack."""
    if inputs.poisoned.pairs is not None:
        return inputs.poisoned.pairs
    inputs.note("poisoning the training pairs again for the defense (the model was cached)")
    poisoned = inputs.attack.poison(inputs.data.train)
    if poisoned.indices != inputs.poisoned.indices:
        raise BenchbdError(f"the attack poisoned other rows than the cached model "
                           f"{inputs.poisoned.fingerprint} records: its code changed; clear "
                           "the cache or use a fresh BENCHBD_CACHE")  # fmt: skip
    return poisoned.pairs


def fresh_model(inputs: StageInputs) -> ClipBundle:
    """A model started exactly as the poisoned one was (same seed, same weights given)."""
    config = inputs.config
    return create_clip(config.model, seed=substream(config.seed, "init"), device=inputs.device,
                       pretrained=config.pretrained)  # fmt: skip


def _cached(inputs: StageInputs, model_fp: str, clip: ClipBundle,
            dropped: list[int] | None = None) -> int | None:  # fmt: skip
    """Load the stage's model from the cache if it is there (for a screened model, only if it
    was trained on the rows this screen kept); the threads it was trained with, or None."""
    level = inputs.poisoned.kernels or "unrecorded"
    found = model_cache.lookup(model_fp, level, clip)
    if found.why_not:
        inputs.note(found.why_not)
    if not found.found or found.record is None:
        return None
    if found.record.dropped != dropped:
        inputs.note(f"cached model {model_fp} was trained on other rows; training it again")
        return None
    inputs.note(f"reusing cached defended model {model_fp} (pretraining skipped)")
    return found.record.threads


def _pretrain(inputs: StageInputs, model_fp: str, clip: ClipBundle, pairs: PairSet,
              stage: str, dropped: list[int] | None = None,
              recipe: dict[str, Any] | None = None, **hooks) -> int:  # fmt: skip
    """Pretrain `clip` with the run's recipe and pretraining seed, then cache it; the threads
    it was trained with. The objective is the recipe's (`pretraining_objective`) unless a
    pretraining defense brings its own, which replaces it; `recipe` replaces settings of the
    run's recipe (a pretraining defense's own learning rate, say: part of its parameters, so
    of the stage's fingerprint)."""
    config = inputs.config
    batch = (replace(config.pretrain, **recipe) if recipe else config.pretrain).batch_size
    if len(pairs) < batch:
        raise BenchbdError(f"the defense left {len(pairs)} training pairs, fewer than one "
                           f"pretraining batch of {batch}")  # fmt: skip
    threads = config.threads
    cache = partial(model_cache.store, model_fp, indices=inputs.poisoned.indices,
                    threads=threads, level=inputs.poisoned.kernels or "unrecorded",
                    dropped=dropped)  # fmt: skip
    train_and_cache(clip, pairs, config.pretrain, seed=substream(config.seed, "pretrain"),
                    stage=stage, task=inputs.data.task, progress=inputs.progress, cache=cache,
                    overrides=recipe, **hooks)  # fmt: skip
    return threads


def _screen_and_pretrain(inputs: StageInputs) -> StagedModel:
    """Screen the poisoned pairs, measure the screen against the poisoned rows, and pretrain a
    fresh model on the rows kept (or load it). A screen that keeps fewer rows than one
    pretraining batch leaves the defender nothing to train on: the defended model is then the
    untrained one, measured as it is (`extra.screen.trained` false), so the cell records the
    defense's cost instead of failing."""
    assert isinstance(inputs.defense, ScreeningDefense)
    pairs = poisoned_pairs(inputs)
    screening = run_screen(inputs, pairs)
    metrics, curve = detection_metrics(screening.scores.numpy(), inputs.poisoned.indices,
                                       screening.dropped)  # fmt: skip
    clip = fresh_model(inputs)
    kept = len(pairs) - len(screening.dropped)
    batch = inputs.config.pretrain.batch_size
    if kept < batch:  # the defender is left with a model trained on nothing: measure that
        inputs.note(f"the screen kept {kept} training pairs, fewer than one pretraining batch "
                    f"of {batch}: the defended model is the untrained one")  # fmt: skip
        clip.model.eval()
        screen = {"dropped": screening.dropped, "kept": kept, "trained": False}
        if curve is not None:
            screen["roc"] = curve
        return StagedModel(clip, "screen", None, False, None, metrics, screen)
    model_fp = stage_fingerprint(inputs.poisoned.fingerprint, inputs.config, inputs.data)
    threads = _cached(inputs, model_fp, clip, screening.dropped)
    cached = threads is not None
    if not cached:
        dropped = set(screening.dropped)
        rows = [i for i in range(len(pairs)) if i not in dropped]
        threads = _pretrain(inputs, model_fp, clip, pairs.subset(rows), "pretrain (screened)",
                            screening.dropped)  # fmt: skip
    clip.model.eval()
    screen = {"dropped": screening.dropped, "kept": kept}
    if curve is not None:
        screen["roc"] = curve
    return StagedModel(clip, "screen", model_fp, cached, threads, metrics, screen)


def run_screen(inputs: StageInputs, pairs: PairSet) -> Screening:
    """The defense's screen of `pairs`, checked: a score per row, finite, dropped rows in
    range. The clean model is built only if the screen asks for it."""
    training = TrainingPairs(pairs, lambda: inputs.clip, clean_model_factory(inputs))
    screening = inputs.defense.screen(training, inputs.context)
    name = inputs.config.defense
    if screening.scores.shape != (len(pairs),):
        raise BenchbdError(f"screen {name!r} gave {tuple(screening.scores.shape)} scores for "
                           f"{len(pairs)} training pairs: one per pair")  # fmt: skip
    if not bool(torch.isfinite(screening.scores).all()):
        raise BenchbdError(f"screen {name!r} gave a score that is not a finite number")
    if screening.dropped and not 0 <= screening.dropped[0] <= screening.dropped[-1] < len(pairs):
        raise BenchbdError(f"screen {name!r} dropped a row outside 0..{len(pairs) - 1}")
    return screening


def clean_model_factory(inputs: StageInputs) -> Callable[[], ClipBundle]:
    """A model the defender trains on the clean split with the run's model and recipe: what a
    screen scores with when it must not trust the poisoned model. Built on first call, cached
    by what shaped it."""
    config, data = inputs.config, inputs.data

    @functools.cache
    def build() -> ClipBundle:
        key = {"clean_model_of": data.fingerprint, "pairs": len(data.clean),
               "model": config.model, "pretrained": config.pretrained,
               "pretrain": config.pretrain.to_dict(), "seed": config.seed}  # fmt: skip
        clean_fp = model_cache.surrogate_fingerprint(key)
        clip = create_clip(config.model, seed=substream(config.seed, "clean-model"),
                           device=inputs.device, pretrained=config.pretrained)  # fmt: skip
        found = model_cache.lookup_surrogate(clean_fp, clip, kind="clean")
        if found.found:
            inputs.note(f"reusing cached clean model clean-{clean_fp}")
            return clip
        if found.why_not:
            inputs.note(found.why_not)
        if len(data.clean) < config.pretrain.batch_size:
            raise BenchbdError(f"a clean model needs one pretraining batch of "
                               f"{config.pretrain.batch_size} clean pairs; there are "
                               f"{len(data.clean)} (--clean-pairs)")  # fmt: skip
        cache = partial(model_cache.store_surrogate, clean_fp, kind="clean")
        train_and_cache(clip, data.clean, config.pretrain,
                        seed=substream(config.seed, "clean-model"), stage="clean model",
                        task=data.task, progress=inputs.progress, cache=cache)  # fmt: skip
        return clip

    return build


def _pretrain_with_defense(inputs: StageInputs) -> StagedModel:
    """Pretrain a fresh model on the poisoned pairs with the defense's objective and epoch
    hook (or load it)."""
    assert isinstance(inputs.defense, PretrainingDefense)
    model_fp = stage_fingerprint(inputs.poisoned.fingerprint, inputs.config, inputs.data)
    clip = fresh_model(inputs)
    threads = _cached(inputs, model_fp, clip)
    cached = threads is not None
    if not cached:
        pairs = poisoned_pairs(inputs)
        hooks = inputs.defense.pretraining(pairs, inputs.context)
        threads = _pretrain(inputs, model_fp, clip, pairs, "pretrain (defended)",
                            recipe=hooks.recipe, objective=hooks.objective,
                            epoch_start=hooks.epoch_start)  # fmt: skip
    clip.model.eval()
    return StagedModel(clip, "pretrain", model_fp, cached, threads)


def detect(
    config: RunConfig, data: BenchmarkData | None = None
) -> tuple[dict[str, Any], dict[str, list[float]] | None]:
    """The detection numbers and ROC curve of the screen `config` names, on the poisoned model
    and pairs `config` describes, without pretraining on the rows it keeps: for scripts that
    compare detectors (a run measures the same numbers and then pretrains)."""
    data = load_experiment_data(config) if data is None else data
    defense = defenses.get(config.defense)(config.defense_settings())
    if not isinstance(defense, ScreeningDefense):
        raise BenchbdError(f"defense {config.defense!r} is not a screen: nothing to detect")
    clip, attack = load_poisoned(config, data)
    poisoned = attack.poison(data.train)
    context = DefenseContext(data.clean, data.task, substream(config.seed, "defense"))
    defense.check(context)
    model_fp = poisoned_fingerprint(config, data, attack)
    record = PoisonedModel(model_fp, poisoned.indices, poisoned.pairs, True, None, None)
    device = next(clip.model.parameters()).device
    inputs = StageInputs(config, data, attack, defense, context, record, clip, device,
                         lambda message: None, None)  # fmt: skip
    screening = run_screen(inputs, poisoned.pairs)
    return detection_metrics(screening.scores.numpy(), poisoned.indices, screening.dropped)
