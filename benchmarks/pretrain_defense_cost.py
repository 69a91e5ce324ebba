"""The cost of pretraining under a defense: seconds per epoch of plain pretraining, RoCLIP and
SafeCLIP, side by side in one run.

Each pretrains the default model from the same start on the same pairs with the same recipe,
through the one training loop; the pretraining defenses add their objective and epoch hook.
An epoch's time runs from the end of the previous epoch's last step to the end of its own, so
it includes the epoch hook (SafeCLIP's pass over every pair and its mixture fit). Repeats are
interleaved, so a busy moment hits every method alike; figures are medians, and each method's
total against plain pretraining measured in the same run. SafeCLIP runs at its default (two
augmented views of every pair, its authors' cross-augmented CLIP loss) and with `cross_aug`
off (the CLIP loss on the pairs themselves, views for the in-modal rows only); its epochs
differ by phase (in-modal warmup, CLIP warmup, then split epochs), so each is printed.

Tiny by default (1,024 pairs, 4 epochs in batches of 128: SafeCLIP's warmups and two split
epochs); --full is benchbd's default pretraining (20,000 pairs, 8 epochs, batch 128).

    python benchmarks/pretrain_defense_cost.py [--full] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchbd.core.params import build, parse_variant
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data
from benchbd.engine.model import create_clip
from benchbd.engine.plugins import DefenseContext, defenses
from benchbd.engine.train import StepReport, TrainConfig, contrastive_objective, train

# A method is plain pretraining or a pretraining defense, NAME or NAME:param=value;param=value.
METHODS = ("plain", "roclip", "safeclip", "safeclip:cross_aug=false")


def epoch_seconds(method: str, data, recipe: TrainConfig) -> list[float]:
    """Wall time of each epoch of one pretraining run."""
    ends: list[float] = []

    def progress(report: StepReport) -> None:  # after each optimizer step
        ends.append(time.perf_counter())

    hooks = {"objective": contrastive_objective}
    if method != "plain":
        name, given = parse_variant(method)
        cls = defenses.get(name)
        context = DefenseContext(data.clean, data.task, seed=0)
        made = cls(build(cls.Params, given, owner=name)).pretraining(data.train, context)
        hooks = {"objective": made.objective or contrastive_objective,
                 "epoch_start": made.epoch_start}  # fmt: skip
    clip = create_clip(seed=0)
    start = time.perf_counter()
    train(clip, data.train, recipe, seed=0, progress=progress, **hooks)
    per_epoch = len(ends) // int(recipe.epochs)
    marks = [start, *ends[per_epoch - 1 :: per_epoch]]
    return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="benchbd's default pretraining")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs, epochs = (20_000, 8) if args.full else (1_024, 4)
    data = load_data("synthetic", DataSizes(train=pairs, clean=256, test=10, validation=0),
                     image_size=32)  # fmt: skip
    recipe = TrainConfig(epochs=epochs, batch_size=128)
    found: dict[str, list[list[float]]] = {method: [] for method in METHODS}
    for _ in range(args.repeats):
        for method in METHODS:
            found[method].append(epoch_seconds(method, data, recipe))
    medians = {m: [statistics.median(r[e] for r in found[m]) for e in range(epochs)]
               for m in METHODS}  # fmt: skip
    base = sum(medians["plain"])
    print(f"pretraining cost per epoch, {pairs} pairs, batch 128, {epochs} epochs, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")  # fmt: skip
    for method in METHODS:
        epochs_text = " ".join(f"{s:6.1f}" for s in medians[method])
        total = sum(medians[method])
        print(f"{method:18s} s/epoch: {epochs_text}   total {total:7.1f} s  "
              f"{total / base:4.2f}x plain")  # fmt: skip


if __name__ == "__main__":
    main()
