"""`benchbd table` over 1,000 result files (target: under 2 s).

Writes 1,000 result files shaped like real ones (every field a 0.3.0 run records: poison
indices, 600 per file, the runtime and its CPU kernels, timings, versions, the trigger's
visibility) into a temporary folder, then times the whole command as a user runs it (a fresh
process, imports included; the median of --repeats runs), a fresh process that only imports
pandas (what the command pays before reading a file), and the library calls alone.

    python benchmarks/table_speed.py [--files 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchbd.reporting.leaderboard import leaderboard, load_folder
from benchbd.reporting.leaderboard_tables import render

ATTACKS = ["badnet", "blended", "wanet", "label_consistent"]
DEFENSES = ["none", "finetune", "cleanclip", "inmodal", "cleanclip_supervised"]
KERNELS = {"aten_capability": "AVX2", "cpu": "Intel(R) Xeon(R) Processor",
           "cpu_isa": ["avx2", "fma", "avx512f"], "cpu_vendor": "GenuineIntel",
           "exact_across_machines": True, "level": "portable-avx2",
           "libraries": {"blas": "mkl", "mkl": "2024.2", "onednn": "3.12.0", "openmp": "201511",
                         "torch": "2.14.1"},
           "machine": "x86_64", "mkl_cbwr": "COMPATIBLE,STRICT", "mode": "portable", "note": None,
           "onednn_max_isa": "AVX2", "openblas_coretype": "Haswell"}  # fmt: skip


def fake_result(i: int, rng: random.Random) -> dict:
    metrics = {when: {"ca": rng.random(), "asr": rng.random(), "ra": rng.random(),
                      "ca_top5": None, "n_test": 2000, "n_triggered": 1800,
                      "classifier": "zero-shot"}
               for when in ("before", "after")}  # fmt: skip
    return {
        "attack": {
            "name": ATTACKS[i % 4],
            "package": "benchbd",
            "params": {"alpha": 0.3},
            "version": "0.3.0",
            "baseline": False,
        },  # fmt: skip
        "defense": {
            "name": DEFENSES[i // 4 % 5],
            "package": "benchbd",
            "params": {"epochs": 5.0, "lr": 0.0005, "batch_size": 128},
            "version": "0.3.0",
            "baseline": DEFENSES[i // 4 % 5] == "none",
        },  # fmt: skip
        "dataset": {
            "name": "synthetic",
            "fingerprint": "0" * 16,
            "classes": 10,
            "split": "test",
            "sizes": {"train": 20000, "clean": 5000, "test": 2000, "validation": 2000},
        },
        "model": "benchbd-rn-tiny",
        "seed": i // 20,
        "target": {"index": 7, "name": "heart"},
        "poison": {"count": 600, "rate": 0.03, "indices": rng.sample(range(20000), 600)},
        "pretrain": {"epochs": 8.0, "lr": 0.003, "batch_size": 128, "warmup_steps": 50},
        "metrics": metrics,
        "der": rng.random(),
        "extra": {
            "attack_state": {},
            "attacker_data": {"pairs": 5000, "source": "train"},
            "defense_report": {},
            "der_basis": "zero-shot",
            "trigger_visibility": {"psnr_db": 18.3, "ssim": 0.82, "linf": 0.92, "n_images": 500},
        },  # fmt: skip
        "runtime": {
            "device": "cpu",
            "threads": 1,
            "pretrain_threads": 1,
            "pretrain_kernels": "portable-avx2",
            "kernels": KERNELS,
        },  # fmt: skip
        "timings": {"total_s": 264.8, "defense_s": 253.4, "pretrain_s": 0.0},
        "versions": {"benchbd": "0.3.0", "torch": "2.14.1", "python": "3.11.7"},
        "created": f"2026-11-29T11:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
        "pretrain_cached": True,
        "fingerprint": f"{i:016x}",
        "poisoned_model_fingerprint": f"{i // 20:016x}",
        "schema_version": 1,
    }


def fresh(*args: str) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system) of a fresh Python process. On a machine
    other work keeps busy, the CPU time is what the wall-clock time would be on an idle one."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime


def median(runs: list[tuple[float, float]]) -> str:
    wall, cpu = (statistics.median(times) for times in zip(*runs, strict=True))
    return f"{wall:.2f} s ({cpu:.2f} s CPU)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(args.files):
            (folder / f"r{i:05d}.json").write_text(json.dumps(fake_result(i, rng), indent=2))
        command = median([fresh("-m", "benchbd", "table", str(folder))
                          for _ in range(args.repeats)])  # fmt: skip
        pandas_import = median([fresh("-c", "import pandas") for _ in range(args.repeats)])
        importlib.import_module("pandas")  # before the clock: the fresh processes count it
        start = time.perf_counter()
        results, _ = load_folder(folder)
        load_s = time.perf_counter() - start
        render(leaderboard(results), "markdown")
        library_s = time.perf_counter() - start
    print(f"benchbd table over {args.files} result files: {command} as a command (fresh "
          f"process, imports included, median of {args.repeats}), {library_s:.2f} s in the "
          f"library ({load_s:.2f} s of it reading the files); a fresh process that only "
          f"imports pandas: {pandas_import}")  # fmt: skip


if __name__ == "__main__":
    main()
