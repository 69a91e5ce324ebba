"""Why the reference grid runs `--jobs 2` with one thread a cell, and what channels-last buys.

Times pretraining steps of the default model on the embedded data, batch 128:
one process on all cores, then two one-thread processes side by side (the work of two cells),
each with the model in channels-last layout (benchbd's) and in the default layout. Figures are
ms per step and the throughput of each arrangement against one process on all cores.

    python benchmarks/thread_split.py [--steps 60]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

WORKER = "--worker"


def worker(threads: int, layout: str, steps: int) -> None:
    """Train `steps` steps (after 5 untimed) and print ms per step."""
    # isort: off
    import benchbd  # noqa: F401  (first: it pins the CPU kernels, which torch reads as it loads)

    # isort: on
    import torch

    torch.set_num_threads(threads)
    from benchbd.engine import distributed
    from benchbd.engine.data.sizes import DataSizes
    from benchbd.engine.data.sources import load_data
    from benchbd.engine.model import create_clip
    from benchbd.engine.train import (
        TrainConfig,
        build_optimizer,
        contrastive_objective,
        memory_batches,
    )

    clip = create_clip(seed=0)
    if layout == "contiguous":
        clip.model.to(memory_format=torch.contiguous_format)
        normalize = clip.normalize_float
        clip.normalize_float = lambda x: normalize(x).contiguous()
    data = load_data("synthetic", DataSizes(), clip.image_size)
    optimizer = build_optimizer(clip.model, 3e-3, 0.1)
    clip.model.train()
    batches = memory_batches(clip, data.train, TrainConfig(), steps + 5, 0, distributed.world())
    for i, batch in enumerate(batches):
        if i == 5:
            start = time.perf_counter()
        loss = contrastive_objective(clip, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    print((time.perf_counter() - start) / steps * 1000)


def timed(threads: int, layout: str, steps: int, copies: int) -> list[float]:
    """ms per step of each of `copies` processes started together."""
    command = [sys.executable, __file__, WORKER, str(threads), layout, str(steps)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    return [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == WORKER:
        worker(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"pretraining step, batch 128, {args.steps} steps, {cores} cores")
    base = None
    for layout in ("channels_last", "contiguous"):
        one = timed(cores, layout, args.steps, 1)[0]
        two = timed(1, layout, args.steps, 2)
        base = base or one
        print(f"{layout:13s} one process, {cores} threads: {one:6.1f} ms/step "
              f"({base / one:4.2f}x)")  # fmt: skip
        pair = " / ".join(f"{t:.1f}" for t in two)
        rate = sum(base / t for t in two)
        print(f"{layout:13s} two processes, 1 thread each: {pair} ms/step ({rate:4.2f}x)")


if __name__ == "__main__":
    main()
