"""`benchbd sweep --dry-run`: what a sweep would run and about how long, training nothing.

The sweep's own planning answers what: every cell's fingerprints (`planning.plan`), the result
files already in the output folder (those cells are skipped) and the poisoned models already
in the cache (`model_cache.has`, at this process's kernel level). How long comes from the
`timings` that result files record, so the estimate is this machine's own past, not a model:

- a cell's time is the run's `total_s` less the poisoning and pretraining it did itself
  (`attack_s + pretrain_s` of a file whose model was not cached), averaged over the files of
  the same attack, defense and model;
- a poisoned model's time is `attack_s + pretrain_s` of the files that trained one, averaged
  per attack and model;
- times recorded with other CPU threads than the sweep's cells will get are scaled by the
  ratio of threads, as if the work split perfectly (it does not: `benchmarks/thread_split.py`
  measures two threads at well under twice one thread's speed, so a time scaled down from
  fewer threads reads short);
- a cell of an attack with no recorded file of its own borrows the mean of the same defense
  and model against the other attacks (a defense's cost hardly depends on the trigger), and a
  poisoned model the mean of the other attacks' models with the same model and pretraining
  objective (the in-modal terms cost more per step); the estimate says it was borrowed;
- a cell or model with nothing recorded even so says so and is left out of the total, never
  guessed.

The wall clock divides the total by the cells run at a time (`--jobs`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchbd.core import kernels
from benchbd.core.registry import bare_name
from benchbd.core.results import read_result
from benchbd.engine import model_cache
from benchbd.engine.planning import plan
from benchbd.engine.run_config import RunConfig
from benchbd.engine.sweep import names_of


@dataclass(frozen=True)
class Estimate:
    """A mean of recorded times, already scaled to the threads the sweep will use."""

    seconds: float
    runs: int  # result files it is the mean of
    scaled_from: tuple[int, ...] = ()  # recorded thread counts other than the sweep's
    borrowed: bool = False  # recorded for other attacks (none of this attack's own)

    def describe(self) -> str:
        mean = f"mean of {self.runs} recorded" if self.runs > 1 else "1 recorded"
        if self.borrowed:
            mean += " for other attacks"
        scaled = ""
        if self.scaled_from:
            counts = "/".join(map(str, self.scaled_from))
            scaled = f", scaled from {counts} thread{'s' * (self.scaled_from != (1,))}"
        return f"~{minutes(self.seconds)} ({mean}{scaled})"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _record(result: dict[str, Any]) -> tuple[float, float, int | None, int | None] | None:
    """(cell seconds, model seconds or 0, cell threads, pretraining threads) of a result."""
    timings = result.get("timings") or {}
    runtime = result.get("runtime") or {}
    try:
        total = float(timings["total_s"])
        model = 0.0
        if not result.get("pretrain_cached", True):
            model = float(timings.get("attack_s", 0.0)) + float(timings.get("pretrain_s", 0.0))
    except (KeyError, TypeError, ValueError):
        return None
    return total - model, model, runtime.get("threads"), runtime.get("pretrain_threads")


def _inmodal_weight(pretrain: Any) -> float:
    """The pretraining objective's in-modal weight of a result's or a config's recipe (a
    result leaves it out at 0)."""
    if isinstance(pretrain, dict):
        return float(pretrain.get("inmodal_weight", 0.0))
    return float(getattr(pretrain, "inmodal_weight", 0.0))


class Timings:
    """Recorded times by (attack, defense, model) for cells and (attack, model, in-modal
    weight) for poisoned models, and the same without the attack for the borrowed estimates."""

    def __init__(self, results: Iterable[dict[str, Any]]) -> None:
        self.cells: dict[tuple, list[tuple[float, int | None]]] = defaultdict(list)
        self.models: dict[tuple, list[tuple[float, int | None]]] = defaultdict(list)
        self.files = 0
        for result in results:
            record = _record(result)
            if record is None:
                continue
            cell_s, model_s, threads, pretrain_threads = record
            self.files += 1
            attack, model = result["attack"]["name"], result.get("model")
            defense = result["defense"]["name"]
            self.cells[(attack, defense, model)].append((cell_s, threads))
            self.cells[(None, defense, model)].append((cell_s, threads))
            if model_s > 0:
                weight = _inmodal_weight(result.get("pretrain"))
                self.models[(attack, model, weight)].append((model_s, pretrain_threads))
                self.models[(None, model, weight)].append((model_s, pretrain_threads))

    @classmethod
    def from_folders(cls, folders: Iterable[Path]) -> Timings:
        """Every readable result file directly in each folder (not subfolders); a file that is
        not a result, or a folder that does not exist, adds nothing."""
        results, seen = [], set()
        for folder in folders:
            for path in sorted(Path(folder).glob("*.json")):
                try:
                    result = read_result(path)
                except ValueError:
                    continue
                key = (result.get("fingerprint"), result.get("created"))
                if key not in seen:  # the same file seen through two folders counts once
                    seen.add(key)
                    results.append(result)
        return cls(results)

    def cell(self, config: RunConfig, threads: int) -> Estimate | None:
        key = (bare_name(config.defense), config.model)  # result files record bare names
        return self._lookup(self.cells, key, bare_name(config.attack), threads)

    def model(self, config: RunConfig, threads: int) -> Estimate | None:
        key = (config.model, _inmodal_weight(config.pretrain))
        return self._lookup(self.models, key, bare_name(config.attack), threads)

    @staticmethod
    def _lookup(table: dict, key: tuple, attack: str, threads: int) -> Estimate | None:
        """This attack's own records, else the other attacks' (marked borrowed)."""
        own = _mean(table.get((attack, *key), []), threads)
        if own is not None:
            return own
        others = _mean(table.get((None, *key), []), threads)
        return None if others is None else replace(others, borrowed=True)


def _mean(records: list[tuple[float, int | None]], threads: int) -> Estimate | None:
    """The mean time at `threads` threads; a record without a thread count is taken as is."""
    if not records:
        return None
    scaled = [s * (t / threads if t else 1.0) for s, t in records]
    other = tuple(sorted({t for _, t in records if t and t != threads}))
    return Estimate(sum(scaled) / len(scaled), len(records), other)


@dataclass(frozen=True)
class CellPlan:
    name: str
    done: bool  # its result file is already in the output folder
    estimate: Estimate | None


@dataclass(frozen=True)
class ModelPlan:
    fingerprint: str
    attack: str
    seed: int
    cached: bool
    needed: bool  # a cell still to run uses it
    estimate: Estimate | None


@dataclass
class DryRun:
    cells: list[CellPlan]
    models: list[ModelPlan]
    jobs: int
    threads: int  # CPU threads each cell will get
    timing_files: int  # recorded result files the estimates come from

    @property
    def pending(self) -> list[CellPlan]:
        return [c for c in self.cells if not c.done]

    @property
    def to_train(self) -> list[ModelPlan]:
        return [m for m in self.models if m.needed and not m.cached]

    def seconds(self) -> tuple[float, int]:
        """(estimated seconds of work, cells and models with no timing recorded)."""
        parts = [c.estimate for c in self.pending] + [m.estimate for m in self.to_train]
        known = [p.seconds for p in parts if p is not None]
        return sum(known), len(parts) - len(known)

    def borrowed(self) -> int:
        """Cells and models still to do whose estimate is the other attacks' time."""
        parts = [c.estimate for c in self.pending] + [m.estimate for m in self.to_train]
        return sum(p is not None and p.borrowed for p in parts)


def cell_threads(jobs: int, threads: int | None = None) -> int:
    """The threads `sweep` gives each cell: the `threads` its run names, else the cores split
    between the jobs, or this process's own count when the cells run one at a time in it."""
    if threads:
        return threads
    if jobs > 1:
        return max(1, (os.cpu_count() or 1) // jobs)
    import torch

    return torch.get_num_threads()


def dry_run(configs: list[RunConfig], done: set[str], jobs: int, timings: Timings) -> DryRun:
    """The plan of a sweep over `configs` whose run fingerprints in `done` already have
    result files: what runs, what trains, what each is expected to take."""
    threads = cell_threads(jobs, configs[0].threads if configs else None)  # one [run]
    level = kernels.describe()["level"]
    cells, groups = [], {}
    for config, name in zip(configs, names_of(configs), strict=True):
        model_fp, run_fp = plan(config, weights=False)  # a dry run downloads nothing
        finished = run_fp in done
        cells.append(CellPlan(name, finished,
                              None if finished else timings.cell(config, threads)))  # fmt: skip
        group = groups.setdefault(model_fp, [config, False])
        group[1] = group[1] or not finished
    models = []
    for model_fp, (config, needed) in groups.items():
        cached = model_cache.has(model_fp, level)
        estimate = timings.model(config, threads) if needed and not cached else None
        models.append(ModelPlan(model_fp, config.attack, config.seed, cached, needed, estimate))
    return DryRun(cells, models, jobs, threads, timings.files)


def report(dry: DryRun, out: Path) -> list[str]:
    """The lines `benchbd sweep --dry-run` prints."""
    pending, cached = dry.pending, sum(m.cached for m in dry.models)
    each = f"{dry.threads} thread{'s' * (dry.threads > 1)} each"
    lines = [
        f"sweep plan: {len(dry.cells)} cells, {len(dry.cells) - len(pending)} already have "
        f"results in {out}, {len(pending)} to run, {dry.jobs} at a time with {each}",
        f"poisoned models: {len(dry.models)}, {cached} cached, {len(dry.to_train)} to train",
    ]
    models = [f"{m.attack} seed {m.seed}" for m in dry.models]
    width = max(map(len, models), default=0)
    for m, name in zip(dry.models, models, strict=True):
        status = "cached" if m.cached else "to train" if m.needed else "not needed"
        time = _time(m.estimate) if m.needed and not m.cached else ""
        lines.append(f"  {status:10s} {name:{width}s}  {m.fingerprint[:12]}  {time}")
    lines.append("cells:")
    width = max((len(c.name) for c in dry.cells), default=0)
    for c in dry.cells:
        status = "done" if c.done else "to run"
        lines.append(f"  {status:10s} {c.name:{width}s}  {'' if c.done else _time(c.estimate)}")
    seconds, unknown = dry.seconds()
    notes = []
    if borrowed := dry.borrowed():
        notes.append(f"{borrowed} from other attacks' timings")
    if unknown:
        notes.append(f"{unknown} with no timing recorded not counted")
    left_out = f" ({'; '.join(notes)})" if notes else ""
    wall = seconds / max(1, min(dry.jobs, len(pending)))
    files = f"{dry.timing_files} recorded result file{'s' * (dry.timing_files != 1)}"
    lines.append(
        f"estimated time: {minutes(seconds)} of cell time{left_out}, about "
        f"{minutes(wall)} wall clock with {dry.jobs} at a time (from {files})"
    )
    return [line.rstrip() for line in lines]


def _time(estimate: Estimate | None) -> str:
    return "no timing recorded" if estimate is None else estimate.describe()
