"""Whether other processes already keep this machine's cores busy, said once at the start.

A run pins its thread count (the count is part of what makes its numbers exact), so two
`benchbd run`s started on one machine each take every core, and each OpenMP barrier then waits
for a thread the other process holds: both run far slower than half speed and record timings
that say so (`benchmarks/two_processes.py` measures it). The count is not changed behind the
user's back, since a rerun with another count gives other numbers; instead `run` and `sweep`
sample what the other processes use for a quarter of a second and, when this run's threads
do not fit in what is left, print one note that says so and what to do.

Read from /proc (Linux) when it is there: the CPU time every visible process spends over the
sample, which counts benchbd's processes and everyone else's alike, and names the benchbd ones.
Elsewhere the one-minute load average stands in. Nothing here is needed for a run to be
right, so a failure to read either is silence, never an error.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
SAMPLE_S = 0.25  # long enough for ~25 clock ticks a busy core, short beside a run's minutes
SLACK = 0.5  # cores of noise (shells, editors, a monitor) that are not worth a note


@dataclass(frozen=True)
class Load:
    """What this process sees of its machine: the cores it may run on, how many of them the
    other processes kept busy during the sample, and which of those are benchbd's."""

    cores: int
    busy: float
    benchbd: list[int] = field(default_factory=list)
    source: str = "proc"  # or "loadavg"

    @property
    def free(self) -> float:
        return max(0.0, self.cores - self.busy)


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask, as `taskset` or a cgroup set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _stat(pid: str) -> tuple[int, int] | None:
    """(parent pid, CPU ticks used so far) of one process, or None when it is gone."""
    try:
        text = (PROC / pid / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])  # ppid, utime + stime


def _snapshot() -> dict[int, tuple[int, int]]:
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(entry.name)
            if stat is not None:
                found[int(entry.name)] = stat
    return found


def is_benchbd_command(argv: list[str]) -> bool:
    """`benchbd ...`, `python -m benchbd ...` or `python path/to/benchbd ...`."""
    if not argv:
        return False
    if Path(argv[0]).name == "benchbd":
        return True
    if len(argv) > 2 and argv[1] == "-m" and argv[2].split(".")[0] == "benchbd":
        return True
    return len(argv) > 1 and Path(argv[1]).name == "benchbd"


def _argv(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _lineage(pid: int, parents: dict[int, int]) -> list[int]:
    """pid and its ancestors, nearest first."""
    chain = []
    while pid in parents and pid not in chain:
        chain.append(pid)
        pid = parents[pid]
    return chain


def benchbd_processes(pids: list[int], parents: dict[int, int]) -> list[int]:
    """Those of `pids` that are benchbd commands or run under one (a sweep's workers)."""
    commands = {pid for pid in parents if is_benchbd_command(_argv(pid))}
    return [pid for pid in pids if commands.intersection(_lineage(pid, parents))]


def measure(sample_s: float = SAMPLE_S, siblings: bool = True) -> Load | None:
    """How busy the other processes keep the machine, sampled over `sample_s` seconds.

    This process and its ancestors (the shell, `nohup`, a torchrun launcher) do not count, nor
    its siblings when `siblings` is false: under torchrun those are this run's other ranks.
    None when neither /proc nor a load average can be read."""
    cores = usable_cores()
    if not (PROC / "self" / "stat").exists():
        try:
            return Load(cores, round(os.getloadavg()[0], 2), source="loadavg")
        except (AttributeError, OSError):
            return None
    try:
        before, start = _snapshot(), time.monotonic()
        time.sleep(sample_s)
        after, elapsed = _snapshot(), time.monotonic() - start
    except OSError:
        return None
    parents = {pid: ppid for pid, (ppid, _) in after.items()}
    skip = set(_lineage(os.getpid(), parents))
    if not siblings:
        skip |= {pid for pid, ppid in parents.items() if ppid == os.getppid()}
    used = {pid: ticks - before[pid][1] for pid, (_, ticks) in after.items()
            if pid in before and pid not in skip}  # fmt: skip
    busy = sum(used.values()) / os.sysconf("SC_CLK_TCK") / elapsed
    active = [pid for pid, ticks in sorted(used.items()) if ticks > 0]
    return Load(cores, round(busy, 2), benchbd_processes(active, parents))


def note(load: Load | None, threads: int, what: str = "run") -> str | None:
    """The one line to print when `threads` more busy threads do not fit in what the others
    leave free; None when they fit (or nothing could be measured)."""
    if load is None or load.busy < SLACK or threads <= load.free + SLACK:
        return None
    others = f"{load.busy:.1f} of its {load.cores} cores"
    if load.benchbd:
        pids = ", ".join(map(str, load.benchbd[:4])) + (", ..." if len(load.benchbd) > 4 else "")
        others += f" ({len(load.benchbd)} benchbd process{'es' * (len(load.benchbd) > 1)}: {pids})"
    if load.source == "loadavg":
        others += " (the one-minute load average)"
    advice = "start it when they finish"
    fit = max(1, math.floor(load.free + SLACK))
    if what == "run" and fit < threads:  # a sweep splits the cores between its cells itself
        advice += (f", or pass --threads {fit} (a rerun must then use {fit} too to give the "
                   "same numbers)")  # fmt: skip
    return (
        f"the machine is busy: other processes keep {others} busy, so this {what}'s "
        f"{threads} thread{'s' * (threads > 1)} will share the rest, run slower and record "
        f"timings that read long; {advice}"
    )


def check(threads: int, what: str = "run", siblings: bool = True) -> str | None:
    """Measure, then the note to print (None when the machine has room)."""
    return note(measure(siblings=siblings), threads, what)
