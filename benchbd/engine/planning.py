"""What a run will be, worked out without training: its data, its attack, and the fingerprints
of its poisoned model and of its result.

`plan(config)` is what a sweep asks before running anything: it validates the cell, names the
poisoned model it shares with other cells (so that model is trained once) and the result file
it would write (so a finished cell is skipped). A screen or pretraining defense trains a model
of its own on the poisoned pairs besides; `stage_fingerprint` names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from benchbd.core.cache import fingerprint
from benchbd.core.errors import BenchbdError
from benchbd.core.registry import Registry, canonical_package, is_builtin
from benchbd.core.seeds import substream
from benchbd.engine.data.pairs import BenchmarkData, PairSet
from benchbd.engine.data.sources import load_data
from benchbd.engine.model import ClipBundle, image_size
from benchbd.engine.model_cache import MODEL_CACHE_VERSION
from benchbd.engine.plugins import Attack, AttackSetup, attacks, defenses, stage_of
from benchbd.engine.pretrained import pretrained_file, pretrained_key
from benchbd.engine.run_config import RunConfig

# The attacker's own data: pairs of the training pool it poisons (web-scraped, before
# poisoning), a seeded sample this large, never the defender's clean pairs or an evaluation
# split. Attacks that optimise against a model train their surrogate on it.
ATTACKER_PAIRS = 5_000


def preflight(config: RunConfig) -> None:
    """What can be checked before any data is made or model trained, cheapest to most
    expensive: the model is known, then its pretrained weights are at hand (from the local
    cache, or downloaded now when the network is there), so that weights that cannot be had
    are refused at once, not after minutes of data generation."""
    image_size(config.model)
    if config.pretrained:
        pretrained_file(config.model, config.pretrained)


def plugin_key(registry: Registry, role: str, name: str) -> dict[str, str]:
    """What names a plugin in a fingerprint: its bare name, and its package unless it is
    built in (so every built-in fingerprint stays as it was). Two packages' plugins of one
    name are two experiments, never one cached model or one result."""
    info = registry.info(name)
    key = {role: info.name}
    if not is_builtin(info.package):
        key[f"{role}_package"] = canonical_package(info.package)
    return key


def load_experiment_data(config: RunConfig) -> BenchmarkData:
    """The run's data, at the image size of its model (read from the model's config)."""
    return load_data(config.dataset, config.sizes, image_size(config.model))


def build_attack(
    config: RunConfig, data: BenchmarkData, surrogate: Callable[[], ClipBundle] | None = None
) -> Attack:
    """The configured attack, told its target, poison budget, seed and surrogate."""
    cls = attacks.get(config.attack)
    try:
        target = data.task.class_index(config.target)
    except ValueError as exc:
        raise BenchbdError(str(exc)) from None
    count = config.poison_budget(len(data.train)) if cls.poisons else 0
    setup = AttackSetup(target, data.task, count, substream(config.seed, "poison"), surrogate,
                        pool=lambda: data.train)  # fmt: skip
    return cls(config.attack_settings(), setup)


def attacker_data_description(data: BenchmarkData) -> dict[str, Any]:
    """What the attacker holds, as the result file records it (no pairs are drawn for it)."""
    return {"source": "train", "pairs": min(ATTACKER_PAIRS, len(data.train))}


def attacker_data(data: BenchmarkData, seed: int) -> tuple[PairSet, dict[str, Any]]:
    """The pairs the attacker holds, and their description for the result file: a seeded
    sample of the training pool (the pairs it poisons, before poisoning). The defender's clean
    split and the evaluation splits stay out of the attacker's reach."""
    described = attacker_data_description(data)
    generator = torch.Generator().manual_seed(substream(seed, "attacker-data"))
    order = torch.randperm(len(data.train), generator=generator)
    rows = order[: described["pairs"]].sort().values
    return data.train.subset(rows), described


def poisoned_fingerprint(config: RunConfig, data: BenchmarkData, attack: Attack) -> str:
    """The poisoned model's identity: everything that shaped its weights and nothing else
    (not the defense, the evaluation split or the clean pairs, which many runs vary)."""
    key = {
        "version": MODEL_CACHE_VERSION,
        "data": data.train_key,
        **plugin_key(attacks, "attack", config.attack),
        "attack_params": attack.params.to_dict(),
        "target": attack.setup.target,
        "count": attack.setup.count,
        "model": config.model,
        "pretrain": config.pretrain.to_dict(),
        "seed": config.seed,
    }
    if config.pretrained:  # only when set, so that from-scratch fingerprints never change
        key["pretrained"] = pretrained_key(config.pretrained)
        key["from_pretrained"] = config.from_pretrained
    return fingerprint(key)


def run_fingerprint(model_fp: str, config: RunConfig, defense_params: dict[str, Any]) -> str:
    """A result's identity: its poisoned model, the defense and the split measured on."""
    return fingerprint({"poisoned": model_fp, **plugin_key(defenses, "defense", config.defense),
                        "defense_params": defense_params, "split": config.split})  # fmt: skip


def stage_fingerprint(model_fp: str, config: RunConfig, data: BenchmarkData) -> str | None:
    """The identity of the model a screen or pretraining defense trains on the poisoned pairs
    (on the rows it kept, or with its own loss and data choice): the undefended poisoned
    model's (data, attack, recipe, seed), the defense's stage, name and parameters, and the
    dataset's fingerprint, since a screen may read the clean pairs. None for a finetune-stage
    defense, which trains no model on the poisoned pairs: those fingerprints are as they were."""
    stage = stage_of(defenses.get(config.defense))
    if stage == "finetune":
        return None
    return fingerprint({"version": MODEL_CACHE_VERSION, "poisoned": model_fp, "stage": stage,
                        **plugin_key(defenses, "defense", config.defense),
                        "defense_params": config.defense_settings().to_dict(),
                        "data": data.fingerprint})  # fmt: skip


def plan(config: RunConfig, weights: bool = True) -> tuple[str, str]:
    """(poisoned model fingerprint, run fingerprint) that `run(config)` will use, computed
    without training anything; `weights`: pretrained weights are found (or downloaded) first,
    as the run will need them (a dry run leaves them be)."""
    if weights:
        preflight(config)
    data = load_experiment_data(config)
    model_fp = poisoned_fingerprint(config, data, build_attack(config, data))
    defense_params = config.defense_settings_for(len(data.clean)).to_dict()
    return model_fp, run_fingerprint(model_fp, config, defense_params)
