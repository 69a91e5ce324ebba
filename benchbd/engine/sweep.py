"""The sweep: every (attack, defense, seed) cell of a grid, resumable and parallel.

Each poisoned model is trained once per (attack, seed): the first cell of a group is its leader
and the group's other cells start only after it, reusing the cached model; they start next,
before other groups' leaders, so a sweep stopped at any point leaves whole groups. A screen or
pretraining defense's cell is in its poisoned model's group like any other (its "before" is
that model) and trains its own model besides, cached under the stage's fingerprint. A cell
whose result file already exists with the same fingerprint is skipped, so a killed sweep
resumes where it stopped. A failing cell is recorded in `<out>/failed/` and never stops the others.

Cells run inline (`jobs=1`), in a local process pool that splits the CPU threads between its
workers, or as submitit jobs (Slurm on a cluster, submitit's local executor for tests;
`benchbd.engine.executors`). All three call the same `run_cell`. What a sweep covers is a
`Grid` (`benchbd.engine.grid`).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchbd.core import kernels
from benchbd.core.cache import atomic_write_text, remove_stale_temporaries, writable_folder
from benchbd.core.errors import BenchbdError
from benchbd.core.results import read_result
from benchbd.engine import model_cache
from benchbd.engine.evaluate import evaluations_in
from benchbd.engine.executors import make_executor
from benchbd.engine.grid import Grid
from benchbd.engine.locks import Locks
from benchbd.engine.param_lists import cell_names
from benchbd.engine.pipeline import run
from benchbd.engine.planning import plan
from benchbd.engine.run_config import RunConfig


def cell_name(config: RunConfig) -> str:
    return f"{config.attack}__{config.defense}__seed{config.seed}"


def names_of(configs: Sequence[RunConfig]) -> list[str]:
    """A distinct name per cell (progress lines, failure records): `cell_name`, with the
    parameters that tell apart cells of one attack, defense and seed appended."""
    return cell_names(configs, [cell_name(c) for c in configs])


@dataclass(frozen=True)
class CellOutcome:
    name: str
    status: str  # "done", "failed" or "skipped"
    seconds: float = 0.0
    error: str | None = None
    path: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def failure_path(out: Path, name: str) -> Path:
    return Path(out) / "failed" / f"{name}.json"


def run_cell(config: RunConfig, out: str, name: str | None = None) -> CellOutcome:
    """One cell, wherever it runs (with the threads its config names): its result file on
    success, a failure record otherwise; `name` is the cell's in its sweep (`names_of`),
    `cell_name` when not given."""
    name = name or cell_name(config)
    start = time.perf_counter()
    try:
        result = run(config, out=Path(out))
    except Exception as exc:  # recorded, never raised: one bad cell must not stop a sweep
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        record = {"cell": name, "error": error, "config": asdict(config),
                  "traceback": traceback.format_exc()}  # fmt: skip
        atomic_write_text(failure_path(out, name), json.dumps(record, indent=2, default=str))
        return CellOutcome(name, "failed", time.perf_counter() - start, error=error)
    failure_path(out, name).unlink(missing_ok=True)
    after = result.metrics["after"]
    metrics = {"ca": after["ca"], "asr": after["asr"]}
    if "detection" in result.metrics:  # a screen's: how well it found the poisoned pairs
        metrics["auroc"] = result.metrics["detection"]["auroc"]
    return CellOutcome(name, "done", time.perf_counter() - start,
                       path=str(Path(out) / result.filename), metrics=metrics)  # fmt: skip


class SweepObserver:
    """What the sweep reports; the CLI draws a progress display, tests collect events."""

    def start(self, total: int, skipped: int) -> None: ...

    def cell_started(self, name: str) -> None: ...

    def cell_finished(self, outcome: CellOutcome) -> None: ...

    def tick(self) -> None:
        """Called while the sweep waits for running cells (about twice a second)."""

    def cell_waiting(self, name: str, holder: str) -> None:
        """A cell waits: another process (or another cell here) holds what it makes."""

    def cell_elsewhere(self, name: str, how: str) -> None:
        """A cell another process made while this sweep ran: skipped here."""


@dataclass
class SweepSummary:
    total: int
    done: int = 0
    skipped: int = 0
    failed: list[CellOutcome] = field(default_factory=list)
    seconds: float = 0.0


def existing_fingerprints(out: Path, evaluations: Sequence[str] = (),
                          only: str = "") -> set[str]:  # fmt: skip
    """The fingerprints of the result files in `out` that hold every opt-in evaluation named
    in `evaluations`: the opt-in metrics are not part of a fingerprint, so a file made without
    them is no finished cell for a sweep that asks for them (rerun, it is replaced by one
    that has them)."""
    found = set()
    for path in Path(out).glob(f"*{only}.json"):  # `only`: a fingerprint's first characters
        try:
            result = read_result(path)
        except ValueError:
            continue
        if set(evaluations) <= set(evaluations_in(result.get("metrics") or {})):
            found.add(result.get("fingerprint"))
    return found


# How often a cell another process holds is looked at again (a glob of the results folder
# and a lock file read: cheap, but not for a thousand cells twice a second on shared storage).
RETRY_S = 2.0


def cell_lock(out: Path, run_fp: str) -> Path:
    """The claim on a cell's result, in its results folder."""
    return Path(out) / ".locks" / f"cell-{run_fp}.lock"


def model_lock(model_fp: str) -> Path:
    """The claim on a poisoned model, beside the cached models."""
    return model_cache.models_dir() / "locks" / f"{model_fp}.lock"


@dataclass
class _Cell:
    config: RunConfig
    name: str
    model_fp: str
    run_fp: str


class _Claims:
    """What this sweep claims before it starts a cell: the cell's result, and the poisoned
    model when it is not cached yet (benchbd.engine.locks). A cell another process holds waits."""

    def __init__(self, out: Path, level: str, evaluations: Sequence[str]) -> None:
        self.out, self.level, self.evaluations = out, level, evaluations
        self.locks = Locks()
        self.waiting_on: dict[str, str] = {}  # cell name -> what holds it, once noted
        self.next_try: dict[str, float] = {}  # cell name -> when to look at it again

    def done_elsewhere(self, cell: _Cell) -> bool:
        """Whether another process has written this cell's result since the sweep began."""
        return cell.run_fp in existing_fingerprints(self.out, self.evaluations,
                                                    only=cell.run_fp[:8])  # fmt: skip

    def take(self, cell: _Cell) -> str | None:
        """Claim what `cell` makes; None when claimed, else who holds it."""
        owner = self.locks.acquire(cell_lock(self.out, cell.run_fp), cell.name)
        if owner is not None:
            return owner.describe()
        if model_cache.has(cell.model_fp, self.level):
            return None
        owner = self.locks.acquire(model_lock(cell.model_fp), cell.name)
        if owner is None:
            return None
        self.locks.release(cell_lock(self.out, cell.run_fp))
        return f"its poisoned model, being trained by {owner.describe()}"

    def release(self, cell: _Cell) -> None:
        self.locks.release(model_lock(cell.model_fp))
        self.locks.release(cell_lock(self.out, cell.run_fp))


def sweep(
    grid: Grid,
    out: Path,
    jobs: int = 1,
    executor: str = "local",
    observer: SweepObserver | None = None,
    slurm: dict[str, Any] | None = None,
    poll_s: float = 0.5,
) -> SweepSummary:
    """Run every cell of `grid` not already in `out`; return what happened.

    Sweeps sharing `out` and the cache share the work: each claims a cell (and a poisoned
    model it is about to train) before starting it, takes other work while another process
    holds a claim, and skips a cell whose result another process wrote meanwhile."""
    if jobs < 1:
        raise BenchbdError(f"--jobs must be at least 1, got {jobs}")
    observer = observer or SweepObserver()
    out = writable_folder(out)
    for folder in (out, out / "failed"):  # left by a sweep that was killed mid-write
        remove_stale_temporaries(folder)
    configs = grid.cells()
    if jobs > 1:  # the cores split between the jobs, unless the grid gives the threads
        share = max(1, (os.cpu_count() or 1) // jobs)
        configs = [c if c.threads else replace(c, threads=share) for c in configs]
    planned = [plan(config) for config in configs]  # validates every cell before any training
    have = existing_fingerprints(out, configs[0].eval)  # a grid's cells share its [run]
    summary = SweepSummary(total=len(configs))
    names = names_of(configs)
    pending = [_Cell(c, n, m, r) for c, n, (m, r) in zip(configs, names, planned, strict=True)
               if r not in have]  # fmt: skip
    summary.skipped = len(configs) - len(pending)
    observer.start(len(configs), summary.skipped)

    # The leader of each poisoned model trains it; followers wait unless it is already cached.
    groups: dict[str, list[_Cell]] = defaultdict(list)
    for cell in pending:
        groups[cell.model_fp].append(cell)
    level = kernels.describe()["level"]  # a model cached at another level is trained again
    ready: list[_Cell] = []
    waiting: dict[str, list[_Cell]] = {}
    for model_fp, members in groups.items():
        if model_cache.has(model_fp, level):
            ready += members
        else:
            ready.append(members[0])
            waiting[model_fp] = members[1:]
    leader_of = {members[0].name: fp for fp, members in groups.items()}

    claims = _Claims(out, level, configs[0].eval)
    pool = make_executor(executor, jobs, out, slurm)
    running: dict[str, tuple[Any, _Cell]] = {}
    start = time.perf_counter()
    try:
        while ready or running or waiting:
            for model_fp in [fp for fp in waiting if model_cache.has(fp, level)]:
                ready[:0] = waiting.pop(model_fp)  # trained by another process: go on with it
            skipped, started = _start_claimed(ready, running, jobs, claims, pool, out,
                                              observer)  # fmt: skip
            summary.skipped += len(skipped)
            for name in skipped:  # a leader made elsewhere: its followers claim for themselves
                ready[:0] = waiting.pop(leader_of.get(name, ""), [])
            if not ready and not running and waiting:  # leaders gone: nothing to wait for here
                ready += [cell for members in waiting.values() for cell in members]
                waiting.clear()
            finished = [name for name, (job, _) in running.items() if job.done()]
            if not finished:
                if not started:
                    observer.tick()
                    time.sleep(poll_s)
                continue
            for name in finished:
                job, cell = running.pop(name)
                try:
                    outcome = job.result()
                except Exception as exc:  # the worker itself died (killed, out of memory)
                    error = f"worker failed: {type(exc).__name__}: {exc}".splitlines()[0]
                    outcome = CellOutcome(name, "failed", error=error)
                claims.release(cell)
                if outcome.status == "done":
                    summary.done += 1
                else:
                    summary.failed.append(outcome)
                observer.cell_finished(outcome)
                if name in leader_of:  # depth first: its followers before other leaders
                    ready[:0] = waiting.pop(leader_of[name], [])
    except BaseException:
        pool.shutdown(abort=True)
        raise
    finally:
        claims.locks.release_all()
    pool.shutdown()
    summary.seconds = time.perf_counter() - start
    return summary


def _start_claimed(ready: list[_Cell], running: dict, jobs: int, claims: _Claims, pool,
                   out: Path,
                   observer: SweepObserver) -> tuple[list[str], bool]:  # fmt: skip
    """Start the first ready cells this sweep can claim, while slots are free; a cell another
    process finished is skipped, one it holds stays ready and is looked at again every
    RETRY_S. The names of the cells skipped, and whether any started."""
    skipped: list[str] = []
    started = False
    now = time.monotonic()
    for cell in list(ready):
        if len(running) >= jobs:
            break
        if claims.next_try.get(cell.name, 0.0) > now:
            continue
        holder = None if claims.done_elsewhere(cell) else claims.take(cell)
        if holder is not None:
            claims.next_try[cell.name] = now + RETRY_S
            if claims.waiting_on.get(cell.name) != holder:
                claims.waiting_on[cell.name] = holder
                observer.cell_waiting(cell.name, holder)
            continue
        ready.remove(cell)
        if claims.done_elsewhere(cell):  # finished before the look, or before the claim
            claims.release(cell)
            skipped.append(cell.name)
            observer.cell_elsewhere(cell.name, "made by another process")
            continue
        observer.cell_started(cell.name)
        running[cell.name] = (pool.submit(run_cell, cell.config, str(out), cell.name),
                              cell)  # fmt: skip
        started = True
    return skipped, started
