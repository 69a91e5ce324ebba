"""Two benchbd processes on one machine: how much each slows the other, and what the note says.

Times pretraining steps of the default model (batch 64, the embedded data) in these
arrangements, each over the same window of wall-clock time, in which every process in it
trains from the first second to the last:

1. one process alone with a thread per core (what `benchbd run` does by default);
2. two such processes side by side (two users, or two terminals, each starting a default run);
3. two processes side by side with half the cores each (what the busy-machine note advises);
4. the process of 1 alone again: the reference is the mean of 1 and 4, so a change in what
   the rest of the machine does during the measurement shows as a gap between the two;
5. one process, then (6) two side by side, with a thread per core under
   OMP_WAIT_POLICY=PASSIVE: OpenMP threads that sleep at a barrier instead of spinning, which
   leaves the cores they wait on to the other process (the same work split between the same
   threads, so the same numbers bit for bit).

The processes are started, and warmed up, once; each waits, idle, for the arrangements it is
part of. The slowdown is a process's time per step against the reference: a fair share of
the cores is 2.0x for two processes, and more than that is what oversubscription costs on
top (threads waiting at each parallel region's barrier for a core the other process holds).
While the lone process trains, the script also asks `benchbd.cli.busy` what a run starting then
would be told.

    python benchmarks/two_processes.py [--window 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = "--worker"
PAIRS, BATCH = 1024, 64


def wait_for(path: Path, poll_s: float = 0.02) -> None:
    while not path.exists():
        time.sleep(poll_s)


def worker(name: str, folder: Path) -> None:
    """Warm up, then for each phase file that names this worker: set its threads, wait for
    the phase's other workers, train for its window, write the mean ms per step."""
    # isort: off
    import benchbd  # noqa: F401  (first: it pins the CPU kernels, which torch reads as it loads)

    # isort: on
    import torch

    from benchbd.engine import distributed
    from benchbd.engine.data import synthetic
    from benchbd.engine.data.pairs import PairSet
    from benchbd.engine.model import create_clip
    from benchbd.engine.train import (
        TrainConfig,
        build_optimizer,
        contrastive_objective,
        memory_batches,
    )

    clip = create_clip(seed=0)
    images, captions, labels = synthetic.generate_split(
        synthetic.SyntheticSpec(image_size=clip.image_size), "train", PAIRS
    )
    pairs = PairSet(torch.from_numpy(images), captions, torch.from_numpy(labels))
    optimizer = build_optimizer(clip.model, 3e-3, 0.1)
    clip.model.train()
    config = TrainConfig(batch_size=BATCH)
    batches = memory_batches(clip, pairs, config, 10**6, 0, distributed.world())

    def step() -> None:
        loss = contrastive_objective(clip, next(batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    (folder / f"warm-{name}").touch()
    for phase in range(1000):
        wait_for(folder / f"phase-{phase}.json")
        plan = json.loads((folder / f"phase-{phase}.json").read_text())
        if plan.get("stop"):
            return
        if name not in plan["workers"]:
            continue
        torch.set_num_threads(plan["threads"])
        (folder / f"ready-{phase}-{name}").touch()
        for other in plan["workers"]:
            wait_for(folder / f"ready-{phase}-{other}", poll_s=0.001)
        start, steps = time.perf_counter(), 0
        while time.perf_counter() - start < plan["window"]:
            step()
            steps += 1
        ms = (time.perf_counter() - start) / steps * 1000
        (folder / f"result-{phase}-{name}").write_text(str(ms))


class Workers:
    """The worker processes and the phases they run, through files in one folder."""

    def __init__(self, folder: Path, names: dict[str, bool], window: float) -> None:
        self.folder, self.window, self.phase = folder, window, 0
        self.procs = []
        for name, passive in names.items():
            env = dict(os.environ, **({"OMP_WAIT_POLICY": "PASSIVE"} if passive else {}))
            command = [sys.executable, __file__, WORKER, name, str(folder)]
            self.procs.append(subprocess.Popen(command, env=env))
        for name in names:
            wait_for(folder / f"warm-{name}", poll_s=0.1)

    def start(self, workers: list[str], threads: int) -> int:
        phase, self.phase = self.phase, self.phase + 1
        plan = {"workers": workers, "threads": threads, "window": self.window}
        (self.folder / f"phase-{phase}.json").write_text(json.dumps(plan))
        return phase

    def results(self, phase: int, workers: list[str]) -> list[float]:
        paths = [self.folder / f"result-{phase}-{name}" for name in workers]
        for path in paths:
            wait_for(path, poll_s=0.1)
        time.sleep(0.1)  # the file is written in one call; let it land
        return [float(path.read_text()) for path in paths]

    def run(self, workers: list[str], threads: int) -> list[float]:
        return self.results(self.start(workers, threads), workers)

    def stop(self) -> None:
        (self.folder / f"phase-{self.phase}.json").write_text(json.dumps({"stop": True}))
        for proc in self.procs:
            proc.wait()


def pair(reference: float, times: list[float], what: str) -> None:
    """One line: two processes' ms/step and their slowdown against the reference."""
    slow = [t / reference for t in times]
    print(f"two processes, {what}: {' / '.join(f'{t:.1f}' for t in times)} ms/step, slowdown "
          f"{' / '.join(f'{s:.2f}x' for s in slow)} (mean {statistics.mean(slow):.2f}x; a fair "
          "share is 2.00x)")  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == WORKER:
        worker(sys.argv[2], Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=8.0, help="seconds timed per phase")
    args = parser.parse_args()
    from benchbd.cli import busy

    cores = busy.usable_cores()
    half = max(1, cores // 2)
    before = busy.measure(sample_s=1.0)
    background = "unknown" if before is None else f"{before.busy:.1f}"
    print(f"pretraining steps of the default model, batch {BATCH}, {cores} cores, "
          f"{args.window:.0f} s per arrangement; other processes kept {background} cores busy "
          "before the start (every figure below shares the machine with them)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        names = {"a": False, "b": False, "c": True, "d": True}
        workers = Workers(Path(tmp), names, args.window)
        try:
            phase = workers.start(["a"], cores)
            time.sleep(1.0)  # well inside the window: what would a second run be told?
            told = busy.check(cores, "run")
            first = workers.results(phase, ["a"])[0]
            both = workers.run(["a", "b"], cores)
            halves = workers.run(["a", "b"], half)
            again = workers.run(["a"], cores)[0]
            quiet = workers.run(["c"], cores)[0]
            quiet_pair = workers.run(["c", "d"], cores)
        finally:
            workers.stop()
    reference = (first + again) / 2
    print(f"  a run starting beside the lone process would be told: "
          f"{told or '(nothing: the machine has room)'}")  # fmt: skip
    print(f"one process, {cores} threads: {first:.1f} then {again:.1f} ms/step "
          f"(reference {reference:.1f})")  # fmt: skip
    pair(reference, both, f"{cores} threads each")
    pair(reference, halves, f"{half} thread{'s' * (half > 1)} each")
    print(f"one process, {cores} threads, OMP_WAIT_POLICY=PASSIVE: {quiet:.1f} ms/step "
          f"({quiet / reference:.2f}x the reference)")  # fmt: skip
    pair(reference, quiet_pair, f"{cores} threads each, OMP_WAIT_POLICY=PASSIVE")


if __name__ == "__main__":
    main()
