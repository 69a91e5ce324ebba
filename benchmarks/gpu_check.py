"""The GPU path, proven end to end: every attack and defense, then 224 px throughput.

1. One short cell of every registered attack (against no defense) and every defense (against
   badnet) on the default model, through `engine.pipeline.run` as `benchbd run` calls it, with
   each plugin's declared `test_params` and small data: status, seconds, CA and ASR each.
2. A 224 px synthetic pretraining run of open_clip's RN50 and ViT-B-32 from scratch (no
   pretrained weights): benchbd's `train()` against open_clip's own trainer `open_clip_train` on
   the same device, model, pairs and batch size, in steady-state pairs/s. On CUDA `train()`
   runs under bf16 autocast with channels-last convolutions (both are its defaults there; the
   script checks them inside the first step rather than assume them), and `open_clip_train`
   runs with `--precision amp_bf16`; on the CPU both run fp32.

A few hundred distinct 224 px images are drawn and repeated to fill the pairs: throughput does
not depend on the pixels, and drawing thousands would take longer than the training measured.
The figures go to the JSON file given by --out; the exit code is 1 when a cell failed.

    python benchmarks/gpu_check.py --out gpu_check.json             # CUDA, at most ~10 minutes
    python benchmarks/gpu_check.py --device cpu --tiny --out x.json  # the same at tiny sizes
    [--threads N]                                                    # CPU threads, both sides

--tiny uses the tiny data sizes and benchbd's tiny ResNet and ViT (32 px) in place of RN50 and
ViT-B-32; it exists so the script itself is tested on any machine.
"""

from __future__ import annotations

# isort: off
import benchbd  # noqa: F401  (first: it pins the CPU kernels, which torch reads as it loads)

# isort: on
import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from benchbd.core.cache import atomic_write_text
from benchbd.engine.data import synthetic
from benchbd.engine.data.pairs import PairSet
from benchbd.engine.model import MODEL_CONFIG_DIR, create_clip, image_size, resolve_device
from benchbd.engine.pipeline import run
from benchbd.engine.plugins import attacks, defenses
from benchbd.engine.run_config import RunConfig
from benchbd.engine.train import Batch, StepReport, TrainConfig, contrastive_objective, train

# (data sizes, pretraining recipe, throughput pairs, distinct images, batch, loader workers)
SETTINGS = {
    # validation images: the input stage fixes its rejection threshold on them
    "full": dict(sizes={"train": 4096, "clean": 512, "test": 500, "validation": 250},
                 pretrain={"epochs": 2.0, "batch_size": 128}, pairs=4096, distinct=256,
                 batch=256, workers=8, models=("RN50", "ViT-B-32")),
    "tiny": dict(sizes={"train": 256, "clean": 64, "test": 64, "validation": 32},
                 pretrain={"epochs": 1.0, "batch_size": 32}, pairs=256, distinct=64,
                 batch=32, workers=1, models=("benchbd-rn-tiny", "benchbd-vit-tiny")),
}  # fmt: skip

OPEN_CLIP_RUNNER = """
import sys, open_clip
open_clip.add_model_config({config_dir!r})
from open_clip_train.main import main
main(sys.argv[1:])
"""


def cells() -> list[tuple[str, str]]:
    """Every attack against no defense, every other defense against badnet."""
    return [(a, "none") for a in attacks.names()] + [
        ("badnet", d) for d in defenses.names() if d != "none"
    ]


def run_cell(attack: str, defense: str, device: str, settings: dict, out: Path) -> dict:
    config = RunConfig(
        attack=attack, defense=defense, device=device, poison_rate=0.05,
        attack_params=dict(attacks.get(attack).test_params),
        defense_params=dict(defenses.get(defense).test_params),
        sizes=settings["sizes"], pretrain=settings["pretrain"],
    )  # fmt: skip
    start = time.perf_counter()
    record: dict[str, Any] = {"attack": attack, "defense": defense}
    try:
        result = run(config, out=out)
    except Exception as exc:  # recorded: one broken plugin must not hide the others
        return record | {"status": "failed", "seconds": round(time.perf_counter() - start, 2),
                         "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}  # fmt: skip
    after = result.metrics["after"]
    return record | {"status": "ok", "seconds": round(time.perf_counter() - start, 2),
                     "ca": after["ca"], "asr": after["asr"]}  # fmt: skip


def synthetic_pairs(size: int, pairs: int, distinct: int) -> PairSet:
    """`pairs` pairs at `size` px: `distinct` drawn images repeated in order."""
    images, captions, labels = synthetic.generate_split(
        synthetic.SyntheticSpec(image_size=size), "train", distinct
    )
    index = torch.arange(pairs) % distinct
    return PairSet(torch.from_numpy(images)[index], [captions[i] for i in index.tolist()],
                   torch.from_numpy(labels)[index])  # fmt: skip


class Checked:
    """The contrastive objective, noting what the training loop really ran it under on its
    first call (autocast, its dtype, the image batch's memory layout); the loss is the same."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def __call__(self, clip, batch: Batch) -> torch.Tensor:
        if not self.seen:
            kind = next(clip.model.parameters()).device.type
            enabled = torch.is_autocast_enabled(kind)
            x = clip.normalize(batch.images.to(next(clip.model.parameters()).device))
            self.seen = {
                "autocast": str(torch.get_autocast_dtype(kind)).removeprefix("torch.")
                if enabled else None,
                "channels_last": x.is_contiguous(memory_format=torch.channels_last),
            }  # fmt: skip
        return contrastive_objective(clip, batch)


def benchbd_rate(model: str, pairs: PairSet, batch: int, device: str) -> dict:
    clip = create_clip(model, seed=0, device=device)
    times: list[float] = []
    objective = Checked()

    def record(report: StepReport) -> None:
        times.append(time.perf_counter())

    train(clip, pairs, TrainConfig(epochs=1, batch_size=batch), seed=0, objective=objective,
          progress=record)  # fmt: skip
    steady = times[2:]  # the first steps include start-up (and CUDA's kernel selection)
    rate = (len(steady) - 1) * batch / (steady[-1] - steady[0])
    return {"pairs_per_s": round(rate, 1), **objective.seen}


def write_pngs(folder: Path, pairs: PairSet, distinct: int) -> Path:
    """open_clip_train's input: the distinct images as PNG files, a tab-separated CSV of all
    pairs (rows repeat the files in the order the pairs do)."""
    (folder / "images").mkdir(parents=True)
    for i in range(distinct):
        array = pairs.images[i].permute(1, 2, 0).numpy()
        Image.fromarray(array).save(folder / "images" / f"{i:05d}.png")
    table = folder / "train.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["filepath", "title"])
        for i, caption in enumerate(pairs.captions):
            writer.writerow([str(folder / "images" / f"{i % distinct:05d}.png"), caption])
    return table


def open_clip_rate(model: str, table: Path, folder: Path, batch: int, device: str,
                   workers: int) -> dict:  # fmt: skip
    """open_clip_train's steady-state pairs/s (its own per-step log, first steps skipped)."""
    runner = folder / "run_open_clip.py"
    runner.write_text(OPEN_CLIP_RUNNER.format(config_dir=str(MODEL_CONFIG_DIR)))
    precision = "amp_bf16" if device.startswith("cuda") else "fp32"
    command = [
        sys.executable, str(runner),
        "--train-data", str(table), "--dataset-type", "csv",
        "--csv-img-key", "filepath", "--csv-caption-key", "title",
        "--model", model, "--batch-size", str(batch), "--epochs", "1",
        "--workers", str(workers), "--precision", precision, "--lr", "1e-3", "--warmup", "10",
        "--logs", str(folder / f"logs-{model}"), "--report-to", "none",
        "--save-frequency", "0", "--log-every-n-steps", "1", "--seed", "0",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))  # as this process
    if not device.startswith("cuda"):
        env["CUDA_VISIBLE_DEVICES"] = ""  # it takes a GPU whenever it sees one
    log = subprocess.run(command, capture_output=True, text=True, cwd=folder, env=env)
    output = log.stdout + log.stderr
    rates = [float(r) for r in re.findall(r"Batch \(t\): [\d.]+, ([\d.]+)/s", output)]
    if log.returncode != 0 or len(rates) < 4:
        last = [line for line in output.strip().splitlines() if line.strip()][-1:] or ["?"]
        return {"error": f"open_clip_train failed (exit {log.returncode}): {last[0][-300:]}",
                "precision": precision}  # fmt: skip
    steady = rates[2:]
    return {"pairs_per_s": round(len(steady) / sum(1 / r for r in steady), 1),
            "precision": precision, "workers": workers}  # fmt: skip


def throughput(model: str, device: str, settings: dict, folder: Path) -> dict:
    size = image_size(model)
    pairs = synthetic_pairs(size, settings["pairs"], settings["distinct"])
    batch = settings["batch"]
    ours = benchbd_rate(model, pairs, batch, device)
    table = write_pngs(folder / model, pairs, settings["distinct"])
    theirs = open_clip_rate(model, table, folder / model, batch, device, settings["workers"])
    ratio = ours["pairs_per_s"] / theirs["pairs_per_s"] if "pairs_per_s" in theirs else None
    return {"model": model, "image_size": size, "batch_size": batch, "pairs": len(pairs),
            "benchbd": ours, "open_clip_train": theirs,
            "ratio": None if ratio is None else round(ratio, 2)}  # fmt: skip


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from benchbd.core import kernels

    return kernels.describe()["cpu"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the figures")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, cpu, ...")
    parser.add_argument("--tiny", action="store_true", help="tiny data and models (a test)")
    parser.add_argument("--threads", type=int, help="CPU threads, open_clip_train's too")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    settings = SETTINGS["tiny" if args.tiny else "full"]
    start = time.perf_counter()
    report: dict[str, Any] = {"device": str(device), "device_name": device_name(device),
                              "tiny": args.tiny, "torch": torch.__version__,
                              "threads": torch.get_num_threads()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BENCHBD_CACHE"] = str(Path(tmp) / "cache")  # every model trained here
        report["cells"] = []
        for attack, defense in cells():
            report["cells"].append(run_cell(attack, defense, str(device), settings, Path(tmp)))
            print(json.dumps(report["cells"][-1]), flush=True)
        report["throughput"] = []
        for model in settings["models"]:
            report["throughput"].append(throughput(model, str(device), settings, Path(tmp)))
            print(json.dumps(report["throughput"][-1]), flush=True)
    report["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_text(args.out, json.dumps(report, indent=2))
    failed = [f"{c['attack']}/{c['defense']}" for c in report["cells"] if c["status"] != "ok"]
    print(f"{len(report['cells'])} cells, {len(failed)} failed {failed or ''}; "
          f"{report['seconds']:.0f} s; figures in {args.out}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
