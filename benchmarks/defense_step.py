"""The cost of one defense step: cleanclip (two views: an AutoAugment image view and an EDA
caption view, both through the model) against finetune (the CLIP loss alone) and inmodal.

Each defense trains the default model for the same number of steps on the same clean pairs;
the first steps (start-up) are excluded. Figures are seconds per step and the ratio against
finetune measured in the same run (target: cleanclip at most 2.5x).

    python benchmarks/defense_step.py [--steps 30] [--batch-size 128] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchbd.core.params import build
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data
from benchbd.engine.model import create_clip
from benchbd.engine.plugins import DefenseContext, defenses
from benchbd.engine.train import StepReport

WARMUP_STEPS = 5


def seconds_per_step(name: str, data, steps: int, batch_size: int) -> float:
    """Mean wall time of the steps after the first WARMUP_STEPS."""
    clip = create_clip(seed=0)
    cls = defenses.get(name)
    pairs = steps * batch_size
    recipe = {"clean_pairs": pairs, "epochs": 1.0, "batch_size": batch_size}
    params = build(cls.Params, recipe, owner=name)
    times: list[float] = []

    def progress(report: StepReport) -> None:  # called after each optimizer step
        times.append(time.perf_counter())

    context = DefenseContext(data.clean, data.task, seed=0, progress=progress)
    cls(params).apply(clip, context)
    timed = times[WARMUP_STEPS:]
    return (timed[-1] - timed[0]) / (len(timed) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    data = load_data("synthetic", DataSizes(), image_size=32)
    names = ["finetune", "cleanclip", "inmodal"]
    found: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeats):  # interleaved, so a busy moment hits every defense alike
        for name in names:
            found[name].append(seconds_per_step(name, data, args.steps, args.batch_size))
    base = statistics.median(found["finetune"])
    print(f"defense step cost, batch {args.batch_size}, {args.steps} steps x {args.repeats}")
    for name in names:
        value = statistics.median(found[name])
        print(f"{name:10s} {value * 1000:7.1f} ms/step   {value / base:4.2f}x finetune")


if __name__ == "__main__":
    main()
