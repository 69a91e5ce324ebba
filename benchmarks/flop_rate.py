"""How close a pretraining step comes to the machine's limit: FLOP rates measured side by side.

In one run, at this process's thread count and CPU kernels (portable by default; set
BENCHBD_KERNELS=native to measure the other mode), and in this order:

- the machine's fp32 matrix multiply rate: a large `torch.mm` (2 n^3 FLOPs), the best of a
  few repeats, timed before and after the training measurements (the mean is the reference);
- the FLOPs of one pretraining step of the model, counted with torch's `FlopCounterMode` over
  the forward and backward of the contrastive objective (it counts matrix multiplies and
  convolutions, not elementwise work, so the rate below is a rate of useful FLOPs);
- benchbd's harness: steady-state pairs/s of `train()` on uint8 pairs in memory, timed before
  and after open_clip's trainer (the mean is its figure), and so its FLOP rate and its
  utilisation (harness FLOP/s / matmul FLOP/s);
- open_clip's own trainer `open_clip_train` on the same model, pairs and batch size (PNG files
  and a CSV, 2 loader workers, fp32; `benchmarks/throughput.py` does the same at a larger
  size), which inherits this process's kernel pins;
- then the arrangement a sweep runs its cells in (`--jobs N` on N cores gives each cell one
  thread): N one-thread processes side by side, started together, first each running the
  same matrix multiply, then each running the same harness measurement. The machine's matmul
  rate is the better of the two arrangements' (one process on all threads, or N one-thread
  processes), so neither utilisation is measured against a reference it alone made low.

    python benchmarks/flop_rate.py [--pairs 2048] [--batch-size 128] [--size 2048]
        [--processes N (default: the usable cores; 0 skips the side-by-side arrangement)]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# isort: off
import benchbd  # noqa: F401  (first: it pins the CPU kernels, which torch reads as it loads)

# isort: on
import torch
from throughput import benchbd_rate, generated_pairs, open_clip_rate, write_png_dataset
from torch.utils.flop_counter import FlopCounterMode

from benchbd.cli import busy
from benchbd.core import kernels
from benchbd.engine import distributed
from benchbd.engine.data.pairs import PairSet
from benchbd.engine.model import DEFAULT_MODEL, create_clip
from benchbd.engine.train import TrainConfig, contrastive_objective, memory_batches


def matmul_rate(n: int, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` n x n fp32 products (after one untimed warm-up)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator)
    b = torch.randn(n, n, generator=generator)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def worker(kind: str, folder: Path, name: str, args: argparse.Namespace) -> None:
    """One process of the side-by-side arrangement: one thread, the work prepared, then (once
    every worker is ready) the measurement, its rate written to `folder/name`."""
    torch.set_num_threads(1)
    pairs = generated_pairs(args.model, args.pairs) if kind == "harness" else None
    if kind == "matmul":
        matmul_rate(args.size, repeats=1)  # warm-up, outside the timed part
    (folder / f"ready-{name}").touch()
    while not (folder / "go").exists():
        time.sleep(0.005)
    if pairs is not None:
        rate = benchbd_rate(pairs, args.model, args.batch_size)
    else:
        rate = matmul_rate(args.size)
    (folder / name).write_text(str(rate))


def side_by_side(kind: str, processes: int, args: argparse.Namespace) -> list[float]:
    """The rate of each of `processes` one-thread workers of `kind`, started together."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = [f"{kind}-{i}" for i in range(processes)]
        command = [sys.executable, __file__, *sys.argv[1:], "--worker", kind, str(folder)]
        procs = [subprocess.Popen([*command, name]) for name in names]
        while not all((folder / f"ready-{name}").exists() for name in names):
            if any(proc.poll() not in (None, 0) for proc in procs):
                raise SystemExit(f"a {kind} worker failed")
            time.sleep(0.05)
        (folder / "go").touch()
        for proc in procs:
            proc.wait()
        return [float((folder / name).read_text()) for name in names]


def step_flops(model: str, pairs: PairSet, batch_size: int) -> int:
    """FLOPs of one training step's forward and backward (the optimizer's update is
    elementwise, which the counter does not count)."""
    clip = create_clip(model, seed=0)
    clip.model.train()
    config = TrainConfig(batch_size=batch_size)
    batch = next(memory_batches(clip, pairs, config, 1, 0, distributed.world()))
    with FlopCounterMode(display=False) as counter:
        contrastive_objective(clip, batch).backward()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--size", type=int, default=2048, help="matmul side n")
    parser.add_argument("--processes", type=int, default=busy.usable_cores(),
                        help="one-thread processes side by side (0: skip)")  # fmt: skip
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, folder, name = args.worker
        worker(kind, Path(folder), name, args)
        return
    threads = torch.get_num_threads()
    pairs = generated_pairs(args.model, args.pairs)
    flops = step_flops(args.model, pairs, args.batch_size)
    peak_before = matmul_rate(args.size)
    ours_before = benchbd_rate(pairs, args.model, args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table = write_png_dataset(folder, pairs)
        reference = open_clip_rate(table, folder, args.model, args.batch_size, args.pairs)
    ours_after = benchbd_rate(pairs, args.model, args.batch_size)
    peak_after = matmul_rate(args.size)
    ours = (ours_before + ours_after) / 2
    peak = (peak_before + peak_after) / 2
    per_pair = flops / args.batch_size
    level = kernels.describe()["level"]
    print(f"model {args.model}, batch {args.batch_size}, {args.pairs} pairs, {threads} threads, "
          f"{level} kernels")  # fmt: skip
    print(f"matmul {args.size}x{args.size} fp32:   {peak / 1e9:8.1f} GFLOP/s "
          f"(before {peak_before / 1e9:.1f}, after {peak_after / 1e9:.1f})")  # fmt: skip
    print(f"one step, forward + backward: {flops / 1e9:8.2f} GFLOP ({per_pair / 1e6:.1f} MFLOP "
          "a pair, matmuls and convolutions)")  # fmt: skip
    for name, rate in (("benchbd harness", ours), ("open_clip_train", reference)):
        print(f"{name}: {rate:8.1f} pairs/s = {rate * per_pair / 1e9:6.1f} GFLOP/s, "
              f"utilisation {rate * per_pair / peak:6.1%} of matmul")  # fmt: skip
    print(f"  (benchbd harness before {ours_before:.1f}, after {ours_after:.1f} pairs/s)")
    print(f"harness / open_clip_train: {ours / reference:.2f}x")
    if args.processes < 1:
        return
    products = side_by_side("matmul", args.processes, args)
    harnesses = side_by_side("harness", args.processes, args)
    machine = max(peak, sum(products))
    total = sum(harnesses)
    print(f"{args.processes} one-thread processes side by side (a sweep's --jobs "
          f"{args.processes}):")  # fmt: skip
    print(f"  matmul: {' + '.join(f'{r / 1e9:.1f}' for r in products)} = "
          f"{sum(products) / 1e9:.1f} GFLOP/s")  # fmt: skip
    print(f"  benchbd harness: {' + '.join(f'{r:.1f}' for r in harnesses)} = {total:.1f} "
          f"pairs/s = {total * per_pair / 1e9:.1f} GFLOP/s, {total / ours:.2f}x the one "
          f"process on {threads} threads")  # fmt: skip
    print(f"machine matmul rate (the better arrangement): {machine / 1e9:.1f} GFLOP/s; "
          f"utilisation: one process {ours * per_pair / machine:.1%}, "
          f"side by side {total * per_pair / machine:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
