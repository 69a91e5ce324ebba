"""`benchbd table` over 1,000 result files (target: under 2 s).

Writes 1,000 result files shaped like real ones (poison indices included, 600 per file) into a
temporary folder, then times the whole command as a user runs it (a fresh process, imports
included) and the library call alone.

    python benchmarks/table_speed.py [--files 1000]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchbd.leaderboard import leaderboard, load_folder, render

ATTACKS = ["badnet", "blended", "wanet", "label_consistent"]
DEFENSES = ["none", "finetune", "cleanclip", "inmodal", "cleanclip_supervised"]


def fake_result(i: int, rng: random.Random) -> dict:
    metrics = {when: {"ca": rng.random(), "asr": rng.random(), "ra": rng.random(),
                      "n_test": 2000, "n_triggered": 1800, "classifier": "zero-shot"}
               for when in ("before", "after")}  # fmt: skip
    return {
        "attack": {"name": ATTACKS[i % 4], "package": "benchbd", "params": {"alpha": 0.3}},
        "defense": {"name": DEFENSES[i // 4 % 5], "package": "benchbd", "params": {}},
        "dataset": {"name": "synthetic", "fingerprint": "0" * 16},
        "model": "benchbd-rn-tiny",
        "seed": i // 20,
        "target": {"index": 7, "name": "heart"},
        "poison": {"count": 600, "rate": 0.03, "indices": rng.sample(range(20000), 600)},
        "metrics": metrics,
        "der": rng.random(),
        "fingerprint": f"{i:016x}",
        "schema_version": 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(args.files):
            (folder / f"r{i:05d}.json").write_text(json.dumps(fake_result(i, rng), indent=2))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "benchbd", "table", str(folder)], check=True,
                       capture_output=True)  # fmt: skip
        command_s = time.perf_counter() - start
        start = time.perf_counter()
        results, _ = load_folder(folder)
        render(leaderboard(results), "markdown")
        library_s = time.perf_counter() - start
    print(f"benchbd table over {args.files} result files: {command_s:.2f} s as a command "
          f"(fresh process, imports included), {library_s:.2f} s in the library")  # fmt: skip


if __name__ == "__main__":
    main()
