"""Training throughput: benchbd's harness against open_clip's own training script, side by side.

Both train the same model with the same batch size on the same image-caption pairs. open_clip's
`open_clip_train` is fed as its users feed it: PNG files and a CSV, 2 loader workers,
`--precision fp32` (its default AMP is far slower on a CPU). benchbd trains from uint8 tensors
held in memory. The figure is the ratio of steady-state pairs per second (the first steps,
which include start-up, are excluded on both sides).

    python benchmarks/throughput.py [--pairs 4096] [--batch-size 256] [--steps 12]
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from benchbd.engine.data import synthetic
from benchbd.engine.data.pairs import PairSet
from benchbd.engine.model import DEFAULT_MODEL, MODEL_CONFIG_DIR, create_clip
from benchbd.engine.train import StepReport, TrainConfig, train

OPEN_CLIP_RUNNER = """
import sys, open_clip
open_clip.add_model_config({config_dir!r})
from open_clip_train.main import main
main(sys.argv[1:])
"""


def write_png_dataset(folder: Path, pairs: PairSet) -> Path:
    images = folder / "images"
    images.mkdir(parents=True)
    rows = []
    for i in range(len(pairs)):
        path = images / f"{i:06d}.png"
        Image.fromarray(pairs.images[i].permute(1, 2, 0).numpy()).save(path)
        rows.append((str(path), pairs.captions[i]))
    table = folder / "train.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["filepath", "title"])
        writer.writerows(rows)
    return table


def open_clip_rate(table: Path, folder: Path, model: str, batch_size: int, pairs: int) -> float:
    runner = folder / "run_open_clip.py"
    runner.write_text(OPEN_CLIP_RUNNER.format(config_dir=str(MODEL_CONFIG_DIR)))
    command = [
        sys.executable, str(runner),
        "--train-data", str(table), "--dataset-type", "csv",
        "--csv-img-key", "filepath", "--csv-caption-key", "title",
        "--model", model, "--batch-size", str(batch_size), "--epochs", "1",
        "--workers", "2", "--precision", "fp32", "--lr", "1e-3", "--warmup", "10",
        "--logs", str(folder / "logs"), "--report-to", "none", "--save-frequency", "0",
        "--log-every-n-steps", "1", "--seed", "0",
    ]  # fmt: skip
    log = subprocess.run(command, capture_output=True, text=True, cwd=folder)
    output = log.stdout + log.stderr
    rates = [float(r) for r in re.findall(r"Batch \(t\): [\d.]+, ([\d.]+)/s,", output)]
    if log.returncode != 0 or len(rates) < 4:
        raise SystemExit(f"open_clip_train failed:\n{output[-3000:]}")
    # Its reported rate is per-step (batch time includes waiting for the loaders);
    # skip the first steps (start-up), average the rest as a harmonic mean = pairs / time.
    steady = rates[2:]
    return len(steady) / sum(1 / r for r in steady)


def generated_pairs(model: str, count: int) -> PairSet:
    """`count` training pairs of the embedded data at the model's image size."""
    size = create_clip(model).image_size
    images, captions, labels = synthetic.generate_split(
        synthetic.SyntheticSpec(image_size=size), "train", count
    )
    return PairSet(torch.from_numpy(images), captions, torch.from_numpy(labels))


def benchbd_rate(pairs: PairSet, model: str, batch_size: int) -> float:
    clip = create_clip(model, seed=0)
    times: list[float] = []

    def record(report: StepReport) -> None:
        times.append(time.perf_counter())

    train(clip, pairs, TrainConfig(epochs=1, batch_size=batch_size), seed=0, progress=record)
    steady = times[2:]
    return (len(steady) - 1) * batch_size / (steady[-1] - steady[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    pairs = generated_pairs(args.model, args.pairs)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table = write_png_dataset(folder, pairs)
        reference = open_clip_rate(table, folder, args.model, args.batch_size, args.pairs)
    ours = benchbd_rate(pairs, args.model, args.batch_size)
    print(f"model {args.model}, batch {args.batch_size}, {args.pairs} pairs, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"open_clip_train (PNG + CSV, 2 workers, fp32): {reference:8.1f} pairs/s")
    print(f"benchbd harness (uint8 tensors in memory):     {ours:8.1f} pairs/s")
    print(f"speed-up: {ours / reference:.2f}x")


if __name__ == "__main__":
    main()
