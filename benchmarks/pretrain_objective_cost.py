"""The cost of the pretraining objective: seconds per step of the CLIP loss alone and of CLIP
plus the in-modal terms (`--inmodal-weight 1`), side by side in one run.

Both pretrain the default model from the same start on the same pairs of the default embedded
data with the default recipe (batch 128), through the one training loop; only the objective
differs (`benchbd.engine.objectives.pretraining_objective`). The in-modal objective draws an
AutoAugment view of every image and an EDA view of every caption and sends them through the
model in the same forward pass, so a step encodes twice the rows. Runs alternate, so a busy
moment hits both alike; a step's time is the median over the steps of every run, the first
steps of each run (warm-up) left out.

    python benchmarks/pretrain_objective_cost.py [--steps 20] [--repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data
from benchbd.engine.model import create_clip, image_size
from benchbd.engine.objectives import pretraining_objective
from benchbd.engine.train import StepReport, TrainConfig, train

WARMUP = 2  # steps of each run left out of the median


def step_seconds(data, pairs, recipe: TrainConfig) -> list[float]:
    """Wall time of each step of one short pretraining run, after the first WARMUP."""
    ends: list[float] = []

    def progress(report: StepReport) -> None:  # after each optimizer step
        ends.append(time.perf_counter())

    clip = create_clip(seed=0)
    objective = pretraining_objective(recipe, data.task, seed=0)
    start = time.perf_counter()
    train(clip, pairs, recipe, seed=0, objective=objective, progress=progress)
    marks = [start, *ends]
    return [b - a for a, b in zip(marks, marks[1:], strict=False)][WARMUP:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each objective")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data("synthetic", DataSizes(), image_size=image_size())
    batch = TrainConfig().batch_size
    pairs = data.train.subset(torch.arange((args.steps + WARMUP) * batch))
    weights = {"CLIP": 0.0, "CLIP + in-modal": 1.0}
    found: dict[str, list[float]] = {name: [] for name in weights}
    for _ in range(args.repeats):
        for name, weight in weights.items():
            recipe = TrainConfig(epochs=1.0, inmodal_weight=weight)
            found[name] += step_seconds(data, pairs, recipe)
    print(f"pretraining step, default model and data, batch {batch}, "
          f"{torch.get_num_threads()} threads, median of {len(found['CLIP'])} steps")  # fmt: skip
    medians = {name: statistics.median(times) for name, times in found.items()}
    for name, seconds in medians.items():
        print(f"  {name:16s} {seconds * 1000:7.1f} ms/step")
    print(f"  ratio            {medians['CLIP + in-modal'] / medians['CLIP']:7.2f}x")


if __name__ == "__main__":
    main()
