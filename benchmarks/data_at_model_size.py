"""Peak memory and time of the embedded data at a real open_clip model's resolution.

python benchmarks/data_at_model_size.py [--model RN50] [--batch 128]

The default sizes (20,000 pretraining, 5,000 clean, 2,000 test and 2,000 validation pairs) at
the model's image size (224 px for RN50), in a fresh cache: the data generated and cached, the
attack's poisons drawn (badnet, 3 %), one pretraining epoch of batches and one pass over the
test images drawn through the loaders training and evaluation use, and the test images
triggered. No model is trained: this is the data's share of a run. Peak memory is the largest
resident set of this process and of the loader workers (getrusage).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import torch


def peak_gb() -> tuple[float, float]:
    """Peak resident memory in GB: this process, and its largest child (loader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
    return own, children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="RN50")
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BENCHBD_CACHE"] = tmp
        from benchbd.engine.data.images import is_streamed, stream
        from benchbd.engine.planning import build_attack, load_experiment_data, preflight
        from benchbd.engine.run_config import RunConfig

        config = RunConfig(model=args.model)
        preflight(config)
        laps: dict[str, float] = {}
        start = clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            laps[name] = now - clock
            clock = now

        data = load_experiment_data(config)
        lap("generate and cache the data")
        attack = build_attack(config, data)
        poisoned = attack.poison(data.train)
        lap(f"draw {attack.setup.count} poisons")
        order = torch.randperm(len(poisoned.pairs), generator=torch.Generator().manual_seed(0))
        batches = [order[i : i + args.batch].tolist()
                   for i in range(0, len(order), args.batch)]  # fmt: skip
        pixels = 0
        for images, _ in stream(poisoned.pairs.images, batches):
            pixels += images.numel()
        lap(f"one pretraining epoch of batches ({len(batches)})")
        test = data.test
        tests = [list(range(i, min(i + args.batch, len(test))))
                 for i in range(0, len(test), args.batch)]  # fmt: skip
        generator = torch.Generator().manual_seed(0)
        for images, _ in stream(test.images, tests):
            attack.apply_trigger(images, generator)
        lap("one pass over the test images, triggered")
        total = time.perf_counter() - start
    own, children = peak_gb()
    side = data.train.images.shape[-1]
    print(f"model {args.model}: {side} px, streamed={is_streamed(data.train)}, "
          f"{pixels / 1e9:.1f} GB of training pixels drawn")  # fmt: skip
    for name, seconds in laps.items():
        print(f"  {name:<45} {seconds:7.1f} s")
    print(f"  {'total':<45} {total:7.1f} s")
    print(f"peak memory: {own:.2f} GB (this process), {children:.2f} GB (largest loader worker)")


if __name__ == "__main__":
    main()
