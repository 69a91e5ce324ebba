"""The attack step and the poisoned model it leads to: the attacker's surrogate, the poisoned
training pairs, and the model pretrained on them (or loaded from the cache, with the rows its
attack poisoned, so a rerun neither attacks nor trains again).

`PoisonedModel` is what this step hands on to the rest of a run (the measurements, the
defense's stage, the result file). `load_poisoned` and `trigger_examples` give scripts and
`benchbd show` the same model and triggers a run would make, outside `pipeline.run`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from functools import partial

import torch

from benchbd.core import kernels
from benchbd.core.seeds import substream
from benchbd.engine import model_cache
from benchbd.engine.data.pairs import BenchmarkData, PairSet, ZeroShotTask
from benchbd.engine.evaluate import triggered_examples
from benchbd.engine.model import ClipBundle, create_clip, resolve_device
from benchbd.engine.observer import Observer
from benchbd.engine.planning import (
    attacker_data,
    build_attack,
    load_experiment_data,
    poisoned_fingerprint,
)
from benchbd.engine.plugins import Attack
from benchbd.engine.recipe_training import train_and_cache
from benchbd.engine.run_config import RunConfig, apply_resources


@dataclass(frozen=True)
class PoisonedModel:
    """What the attack step hands on: the poisoned model's fingerprint and poisoned rows, and
    either the poisoned pairs still to be trained on or the fact that the model came from the
    cache (or, for pretrained weights used as they are, that nothing is trained)."""

    fingerprint: str
    indices: list[int]
    pairs: PairSet | None  # to pretrain on; None when the model is cached or used as given
    cached: bool
    threads: int | None  # CPU threads and kernel level it was (or will be) trained with;
    kernels: str | None  # None for weights used as given


def surrogate_model(config: RunConfig, data: BenchmarkData, device, observer: Observer):
    """A factory for a clean CLIP trained on the attacker's data with the pretraining recipe,
    for attacks that optimise against a model. Trained on first call, cached like every
    model."""

    @functools.cache
    def build() -> ClipBundle:
        pairs, described = attacker_data(data, config.seed)
        key = {"surrogate_of": data.train_key, "attacker_data": described,
               "model": config.model, "pretrain": config.pretrain.to_dict(),
               "seed": config.seed}  # fmt: skip
        surrogate_fp = model_cache.surrogate_fingerprint(key)
        clip = create_clip(config.model, seed=substream(config.seed, "surrogate"), device=device)
        found = model_cache.lookup_surrogate(surrogate_fp, clip)
        if found.found:
            observer.note(f"reusing cached surrogate model surrogate-{surrogate_fp}")
            return clip
        if found.why_not:
            observer.note(found.why_not)
        train_and_cache(clip, pairs, config.pretrain, seed=substream(config.seed, "surrogate"),
                        stage="surrogate", task=data.task, progress=observer.step,
                        cache=partial(model_cache.store_surrogate, surrogate_fp))  # fmt: skip
        return clip

    return build


def poison(
    config: RunConfig,
    data: BenchmarkData,
    attack: Attack,
    clip: ClipBundle,
    level: str,
    observer: Observer,
) -> PoisonedModel:
    """The attack step: load the cached poisoned model into `clip` with the rows its attack
    poisoned, so the attack is not run again; otherwise poison the training pairs."""
    model_fp = poisoned_fingerprint(config, data, attack)
    if not config.trains_poisoned_model:
        poisoned = attack.poison(data.train)
        return PoisonedModel(model_fp, poisoned.indices, None, False, None, None)
    found = model_cache.lookup(model_fp, level, clip)
    if found.why_not:
        observer.note(found.why_not)
    if found.record is not None:
        return PoisonedModel(model_fp, found.record.poison_indices, None, True,
                             found.record.threads, found.record.kernels)  # fmt: skip
    poisoned = attack.poison(data.train)
    return PoisonedModel(model_fp, poisoned.indices, poisoned.pairs, False,
                         config.threads, level)  # fmt: skip


def pretrain(
    config: RunConfig, poisoned: PoisonedModel, clip: ClipBundle, observer: Observer,
    task: ZeroShotTask,
) -> None:  # fmt: skip
    """The pretraining step: train `clip` on the poisoned pairs and cache it, unless it came
    from the cache or the pretrained weights are used as they are. The recipe's objective is
    the CLIP loss, plus in-modal terms when its `inmodal_weight` is set (`task` gives the
    captions' synonyms)."""
    if not config.trains_poisoned_model:
        observer.note(f"pretrained weights {config.pretrained} used as they are (not trained)")
    elif poisoned.cached:
        observer.note(f"reusing cached poisoned model {poisoned.fingerprint} "
                      "(pretraining skipped)")  # fmt: skip
    else:
        cache = partial(model_cache.store, poisoned.fingerprint, indices=poisoned.indices,
                        threads=poisoned.threads, level=poisoned.kernels)  # fmt: skip
        train_and_cache(clip, poisoned.pairs, config.pretrain,
                        seed=substream(config.seed, "pretrain"), stage="pretrain", task=task,
                        progress=observer.step, cache=cache)  # fmt: skip


def load_poisoned(
    config: RunConfig, data: BenchmarkData | None = None
) -> tuple[ClipBundle, Attack]:
    """The poisoned model `config` describes, with its attack, for scripts that study a defense
    outside `run()`: loaded from the cache, or poisoned, trained and cached first, exactly as
    `run()` would."""
    observer = Observer()
    config = apply_resources(config)
    data = load_experiment_data(config) if data is None else data
    device = resolve_device(config.device)
    attack = build_attack(config, data, surrogate_model(config, data, device, observer))
    clip = create_clip(config.model, seed=substream(config.seed, "init"), device=device,
                       pretrained=config.pretrained)  # fmt: skip
    level = kernels.describe(device=str(device))["level"]
    pretrain(config, poison(config, data, attack, clip, level, observer), clip, observer,
             data.task)  # fmt: skip
    clip.model.eval()
    return clip, attack


def trigger_examples(config: RunConfig, count: int) -> tuple[Attack, torch.Tensor, torch.Tensor]:
    """The attack `config` describes, with its first `count` non-target test images, clean and
    triggered exactly as `run` triggers them at evaluation (same attack seed, image size and
    trigger generator), for `benchbd show`. No poisoned model is trained: a test-time trigger
    does not depend on it. A trigger optimised against the attacker's surrogate (BadCLIP's
    patch) is computed as poisoning computes it, training the surrogate if it is not cached."""
    data = load_experiment_data(config)
    surrogate = surrogate_model(config, data, resolve_device(config.device), Observer())
    attack = build_attack(config, data, surrogate)
    clean, triggered = triggered_examples(data.test, attack.setup.target, attack.apply_trigger,
                                          substream(config.seed, "evaluate"), count)  # fmt: skip
    return attack, clean, triggered
