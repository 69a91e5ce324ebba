"""A zoo: a set of clean and poisoned models that model detectors are measured on.

A zoo is described by its axes (`ZooSpec`): poisoned models for every attack x target x poison
rate x seed, and clean models (the no-attack run, `none`) for their own seeds. Each model is a
cell's poisoned model exactly as `benchbd run` makes it: the same `RunConfig` (its defense
aside, which never shapes the poisoned model), the same fingerprint (`planning.
poisoned_fingerprint`), trained and cached by `poisoned_model.load_poisoned`
(through the model cache).
So a zoo reuses every model a run or sweep of its cells already trained, and a run reuses the
zoo's.

Which models fix a detector's threshold and which report its metrics is a rule on the seed,
stated in the manifest: even seeds are the validation part, odd seeds the test part. Every
attack, target and poison rate then appears in both parts, and no model's own seed is used to
choose what it is judged by.

The manifest (`manifest.json`, written atomically) lists each model: fingerprint, attack,
target, poison rate and count, seed, whether it is clean, and its part.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from benchbd.core import kernels
from benchbd.core.cache import atomic_write_text
from benchbd.core.errors import BenchbdError
from benchbd.core.results import versions
from benchbd.engine import model_cache
from benchbd.engine.data.pairs import BenchmarkData
from benchbd.engine.model import DEFAULT_MODEL
from benchbd.engine.planning import build_attack, load_experiment_data, poisoned_fingerprint
from benchbd.engine.poisoned_model import load_poisoned
from benchbd.engine.run_config import RunConfig

MANIFEST = "manifest.json"
CLEAN_ATTACK = "none"  # a clean model is the no-attack run's model
SPLIT_RULE = "seed % 2 == 0: validation (fixes thresholds); odd seeds: test (reported)"


def part_of(seed: int) -> str:
    """The zoo part a model of this seed belongs to (SPLIT_RULE)."""
    return "validation" if seed % 2 == 0 else "test"


@dataclass(frozen=True)
class ZooSpec:
    """The zoo's axes. The default is 40 digits models: 24 poisoned (badnet and blended;
    targets zero, three and seven; 3 % and 10 % poisons; seeds 0 and 1) and 16 clean (seeds
    0-15), at digits' default sizes and pretraining recipe."""

    attacks: tuple[str, ...] = ("badnet", "blended")
    targets: tuple[str, ...] = ("zero", "three", "seven")
    poison_rates: tuple[float, ...] = (0.03, 0.1)
    seeds: tuple[int, ...] = (0, 1)
    clean_seeds: tuple[int, ...] = tuple(range(16))
    dataset: str = "digits"
    model: str = DEFAULT_MODEL
    sizes: Mapping[str, int] = field(default_factory=dict)  # unset: the dataset's defaults
    pretrain: Mapping[str, Any] = field(default_factory=dict)  # unset: the dataset's recipe
    device: str = "auto"

    def __post_init__(self) -> None:
        if not self.clean_seeds or not (self.attacks and self.targets and self.poison_rates
                                        and self.seeds):  # fmt: skip
            raise BenchbdError("a zoo needs clean models and poisoned models: give at least "
                               "one clean seed, attack, target, poison rate and seed")  # fmt: skip
        if CLEAN_ATTACK in self.attacks:
            raise BenchbdError(f"attack {CLEAN_ATTACK!r} makes the clean models: give their "
                               "seeds as clean seeds")  # fmt: skip

    def configs(self) -> list[RunConfig]:
        """Every model's run, the poisoned ones first, in the order of the axes."""
        common = {"defense": "none", "dataset": self.dataset, "model": self.model,
                  "sizes": dict(self.sizes) or None, "pretrain": dict(self.pretrain) or None,
                  "device": self.device}  # fmt: skip
        poisoned = [RunConfig(attack=a, target=t, poison_rate=r, seed=s, **common)
                    for a in self.attacks for t in self.targets for r in self.poison_rates
                    for s in self.seeds]  # fmt: skip
        clean = [RunConfig(attack=CLEAN_ATTACK, seed=s, **common) for s in self.clean_seeds]
        return poisoned + clean

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ZooModel:
    """One model of a zoo, as the manifest records it (its config besides, for loading it)."""

    fingerprint: str
    attack: str
    target: str | None  # None for a clean model: it has no backdoor to aim
    target_index: int | None
    poison_rate: float
    poison_count: int
    seed: int
    clean: bool
    part: str
    config: RunConfig = field(compare=False, repr=False)

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "config"}


def plan_zoo(spec: ZooSpec) -> list[ZooModel]:
    """Every model of the zoo with its fingerprint, computed without training anything."""
    data_of: dict[str, BenchmarkData] = {}
    models = []
    for config in spec.configs():
        key = json.dumps([config.dataset, asdict(config.sizes), config.model])
        data = data_of.setdefault(key, load_experiment_data(config))
        attack = build_attack(config, data)
        fp = poisoned_fingerprint(config, data, attack)
        clean = not attack.poisons
        target = None if clean else attack.setup.target
        models.append(ZooModel(
            fp, config.attack, None if clean else attack.setup.target_name, target,
            0.0 if clean else attack.setup.count / len(data.train), attack.setup.count,
            config.seed, clean, part_of(config.seed), config))  # fmt: skip
    fingerprints = [m.fingerprint for m in models]
    if len(set(fingerprints)) != len(fingerprints):
        raise BenchbdError("two models of this zoo are the same model (same fingerprint): "
                           "give distinct attacks, targets, poison rates and seeds")  # fmt: skip
    return models


def cached(model: ZooModel) -> bool:
    """Whether the model is in the cache at this process's kernel level (loads, no training)."""
    return model_cache.has(model.fingerprint, kernels.describe()["level"])


def manifest(spec: ZooSpec, models: Sequence[ZooModel]) -> dict[str, Any]:
    """The zoo's manifest: how it was made, its split rule, and each model."""
    return {"kind": "benchbd-zoo", "spec": spec.to_dict(), "split_rule": SPLIT_RULE,
            "models": [m.record() for m in models],
            "counts": {"models": len(models), "clean": sum(m.clean for m in models),
                       "poisoned": sum(not m.clean for m in models)},
            "versions": versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip


def write_manifest(out: Path, spec: ZooSpec, models: Sequence[ZooModel]) -> Path:
    path = Path(out) / MANIFEST
    atomic_write_text(path, json.dumps(manifest(spec, models), indent=1) + "\n")
    return path


def _train_one(config: RunConfig, threads: int | None) -> float:
    """Load or train one zoo model (in a worker process too); its seconds."""
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    load_poisoned(config)
    return time.perf_counter() - start


def build_zoo(
    models: Sequence[ZooModel],
    jobs: int = 1,
    threads: int | None = None,
    done: Callable[[ZooModel, float], None] | None = None,
) -> dict[str, float]:
    """Train and cache every model not cached yet (`jobs` at once, each with `threads`);
    seconds per trained model, by fingerprint. A cached model is left as it is."""
    if jobs < 1:
        raise BenchbdError(f"--jobs must be at least 1, got {jobs}")
    missing = [m for m in models if not cached(m)]
    seconds: dict[str, float] = {}
    if jobs == 1 or len(missing) <= 1:
        for model in missing:
            seconds[model.fingerprint] = _train_one(model.config, threads)
            if done:
                done(model, seconds[model.fingerprint])
        return seconds
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_train_one, m.config, threads): m for m in missing}
        for future, model in futures.items():
            seconds[model.fingerprint] = future.result()
            if done:
                done(model, seconds[model.fingerprint])
    return seconds


def read_manifest(path: Path) -> dict[str, Any]:
    """A manifest as written, checked to be one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BenchbdError(f"cannot read zoo manifest {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != "benchbd-zoo":
        raise BenchbdError(f"{path} is not a benchbd zoo manifest")
    return data


def spec_of(data: Mapping[str, Any]) -> ZooSpec:
    """The spec a manifest records, rebuilt (the same models, the same fingerprints)."""
    spec = dict(data["spec"])
    for key in ("attacks", "targets", "poison_rates", "seeds", "clean_seeds"):
        spec[key] = tuple(spec[key])
    return ZooSpec(**spec)
