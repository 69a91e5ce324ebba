"""What pinning the CPU kernels changes, and what it costs (the README's "Same numbers on every
machine").

Each configuration trains the default model for a few pretraining steps (batch 128, one
thread, the same seeded batches) in a fresh process, since the libraries read their variables
once, when torch first runs them. Printed per configuration: the kernels torch ran (ATen's
capability), a digest of the trained weights and one of the image features of test images in
eval mode (the inference path), and ms per step. Native, portable and portable without oneDNN
convolutions run in interleaved rounds, so their times are comparable; the ratios are of
medians over rounds.

With `--emulate CPU,...` (needs `qemu-x86_64`, e.g. `apt-get install qemu-user`) one forward
and backward pass also runs under emulated CPUs (`Haswell-v4`: an older Intel CPU, AVX2 and
other cache sizes; `EPYC-Rome`: an AMD one), with the portable pins and with MKL's AVX2 branch
in their place, and is compared with this machine's: the nearest this script gets to a second
machine. It is slow (a few minutes per CPU and configuration).

    python benchmarks/kernels.py [--steps 20] [--rounds 3] [--emulate Haswell-v4,EPYC-Rome]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

WORKER = "--worker"
PORTABLE = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE,STRICT",
}
NO_PINS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")
ATEN_ONEDNN = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# name -> (environment, oneDNN convolutions on)
CONFIGS = {
    "native": ({}, True),
    "portable": (PORTABLE, True),
    "portable, MKL AVX2 branch": (ATEN_ONEDNN | {"MKL_CBWR": "AVX2,STRICT"}, True),
    "portable, no oneDNN conv": (PORTABLE, False),
    "ATen avx2 only": ({"ATEN_CPU_CAPABILITY": "avx2"}, True),
    "oneDNN AVX2 only": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, True),
    "MKL COMPATIBLE,STRICT only": ({"MKL_CBWR": "COMPATIBLE,STRICT"}, True),
    "ATen + oneDNN": (ATEN_ONEDNN, True),
    "ATen + oneDNN + MKL COMPATIBLE": (ATEN_ONEDNN | {"MKL_CBWR": "COMPATIBLE"}, True),
}
TIMED = ("native", "portable", "portable, MKL AVX2 branch", "portable, no oneDNN conv")


def digest(tensors) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def worker(steps: int, onednn: bool, single_pass: bool) -> None:
    """Train `steps` steps (or one forward and backward pass); print one JSON line."""
    import torch

    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = onednn
    torch.backends.nnpack.set_flags(onednn)  # without oneDNN, no NNPACK either: plain ATen
    from benchbd.engine.data.sizes import DataSizes
    from benchbd.engine.data.sources import load_data
    from benchbd.engine.distributed import world
    from benchbd.engine.model import create_clip
    from benchbd.engine.train import (
        TrainConfig,
        build_optimizer,
        contrastive_objective,
        memory_batches,
    )

    clip = create_clip(seed=0)
    data = load_data("synthetic", DataSizes(train=2048, clean=128, test=256), clip.image_size)
    times = []
    if single_pass:
        pairs = data.train
        out = clip.model(clip.normalize(pairs.images[:16]), clip.tokenize(pairs.captions[:16]))
        (out["image_features"] @ out["text_features"].T).logsumexp(1).mean().backward()
        weights = digest(p.grad for p in clip.model.parameters() if p.grad is not None)
    else:
        optimizer = build_optimizer(clip.model, 3e-3, 0.1)
        clip.model.train()
        for batch in memory_batches(clip, data.train, TrainConfig(), steps, 0, world()):
            start = time.perf_counter()
            loss = contrastive_objective(clip, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        weights = digest(clip.model.state_dict().values())
    clip.model.eval()
    with torch.no_grad():
        features = clip.model.encode_image(clip.normalize(data.test.images))
    print(json.dumps({
        "capability": torch.backends.cpu.get_cpu_capability(),
        "weights": weights,
        "features": digest([features]),
        "ms": statistics.median(times[3:]) * 1000 if len(times) > 3 else None,
    }))  # fmt: skip


def launch(name: str, steps: int, cache: str, prefix=(), single_pass: bool = False) -> dict:
    pins, onednn = CONFIGS[name]
    env = {k: v for k, v in os.environ.items() if k not in NO_PINS}
    env |= pins | {"BENCHBD_CACHE": cache, "BENCHBD_KERNELS": "native"}  # the pins are ours
    command = [*prefix, sys.executable, __file__, WORKER, str(steps), str(int(onednn)),
               str(int(single_pass))]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == WORKER:
        worker(int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--emulate", default="", help="qemu CPU models, comma-separated")
    args = parser.parse_args()
    from benchbd.core.kernels import describe

    here = describe()
    print(f"{here['cpu']} ({here['cpu_vendor']}; {', '.join(here['cpu_isa'])}); torch "
          f"{here['libraries']['torch']}, MKL {here['libraries']['mkl']}, oneDNN "
          f"{here['libraries']['onednn']}; one thread, batch 128, {args.steps} steps")  # fmt: skip
    runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as cache:
        launch("native", 1, cache)  # generates the data into the cache, untimed
        for _ in range(args.rounds):  # interleaved, so load on the machine hits all alike
            for name in TIMED:
                runs[name].append(launch(name, args.steps, cache))
        for name in CONFIGS:
            if name not in TIMED:
                runs[name].append(launch(name, args.steps, cache))
        native, portable = runs["native"][0], runs["portable"][0]
        print(f"\n{'configuration':32s} {'ATen':7s} {'weights':13s} {'features':13s} "
              f"{'= native':9s} {'= portable':10s}")  # fmt: skip
        for name, results in runs.items():
            first = results[0]
            same = {r["weights"] + r["features"] for r in results}
            print(f"{name:32s} {first['capability']:7s} {first['weights']:13s} "
                  f"{first['features']:13s} "
                  f"{'yes' if first['weights'] == native['weights'] else 'no':9s} "
                  f"{'yes' if first['weights'] == portable['weights'] else 'no':10s}"
                  + (f" ({len(results)} runs, {'identical' if len(same) == 1 else 'DIFFER'})"
                     if len(results) > 1 else ""))  # fmt: skip
        medians = {name: statistics.median(r["ms"] for r in runs[name]) for name in TIMED}
        print(f"\nms per pretraining step, median of {args.rounds} interleaved rounds:")
        for name in TIMED:
            each = " / ".join(f"{r['ms']:.1f}" for r in runs[name])
            print(f"{name:32s} {medians[name]:6.1f} ms ({each}); "
                  f"{medians[name] / medians['native']:.2f}x native")  # fmt: skip
        if args.emulate:
            qemu = shutil.which("qemu-x86_64")
            if qemu is None:
                sys.exit("--emulate needs qemu-x86_64 (apt-get install qemu-user)")
            print("\none forward and backward pass (16 pairs), this machine against emulated CPUs:")
            for name in ("portable", "portable, MKL AVX2 branch"):
                mine = launch(name, 0, cache, single_pass=True)
                print(f"{name + ', this machine':44s} {mine['capability']:7s} "
                      f"{mine['weights']:13s} {mine['features']:13s}")  # fmt: skip
                for cpu in args.emulate.split(","):
                    began = time.perf_counter()
                    # qemu runs the interpreter itself, not a shell wrapper around it
                    other = launch(name, 0, cache, prefix=(qemu, "-cpu", cpu), single_pass=True)
                    same = all(other[k] == mine[k] for k in ("weights", "features"))
                    seconds = time.perf_counter() - began
                    print(f"{name + ', qemu ' + cpu:44s} {other['capability']:7s} "
                          f"{other['weights']:13s} {other['features']:13s} "
                          f"{'same' if same else 'OTHER'} ({seconds:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
