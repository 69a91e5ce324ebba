"""The default run's figures: wall-clock time of the quickstart command, and the poisoned
model's CA and ASR on several seeds.

Starts from an empty cache (so the first run includes generating the dataset and pretraining),
times `benchbd run --attack badnet --defense finetune`, then the same with `--defense none`
(which reuses the cached poisoned model), then pretrains the other seeds.

    python benchmarks/default_run.py [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path


def timed_run(args: list[str], env: dict, out: Path) -> tuple[float, dict]:
    before = set(out.glob("*.json"))
    start = time.perf_counter()
    subprocess.run(["benchbd", "run", *args, "--out", str(out)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    elapsed = time.perf_counter() - start
    (new,) = set(out.glob("*.json")) - before
    return elapsed, json.loads(new.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "BENCHBD_CACHE": str(Path(tmp) / "cache")}
        out = Path(tmp) / "results"
        out.mkdir()
        rows = []
        for seed in seeds:
            common = ["--attack", "badnet", "--seed", str(seed)]
            if seed == seeds[0]:
                t_full, full = timed_run([*common, "--defense", "finetune"], env, out)
                t_cached, cached = timed_run([*common, "--defense", "none"], env, out)
                print(f"badnet + finetune, empty cache:        {t_full:6.1f} s "
                      f"(pretrain {full['timings']['pretrain_s']:.1f} s, "
                      f"defense {full['timings']['defense_s']:.1f} s)")  # fmt: skip
                print(f"badnet + none, poisoned model cached:  {t_cached:6.1f} s")
                print(f"finetune after: CA {full['metrics']['after']['ca']:.3f}, "
                      f"ASR {full['metrics']['after']['asr']:.3f}")  # fmt: skip
            else:
                _, cached = timed_run([*common, "--defense", "none"], env, out)
            before = cached["metrics"]["before"]
            rows.append((seed, before["ca"], before["asr"], cached["poison"]["rate"]))
        print("\nseed  poison rate  CA (poisoned)  ASR (poisoned)")
        for seed, ca, asr, rate in rows:
            print(f"{seed:4d}  {rate:11.3f}  {ca:13.3f}  {asr:14.3f}")
        cas, asrs = [r[1] for r in rows], [r[2] for r in rows]
        print(f"min   {'':11s}  {min(cas):13.3f}  {min(asrs):14.3f}")


if __name__ == "__main__":
    main()
