"""The reference results in `results/`: the full default grid, its table and its plot.

Runs, as a user would, and times:

    benchbd sweep --attacks all --defenses none,finetune,cleanclip,inmodal,cleanclip_supervised \
        --seeds 0,1,2 --jobs 2 --out results
    benchbd table results --format markdown > results/LEADERBOARD.md
    benchbd plot results --out results/leaderboard.png

then prints the defense checks the README reports (CleanCLIP against plain finetuning and
supervised finetuning on badnet and blended). Poisoned models already in the cache are reused,
as in any sweep; `--cold` first points the cache at an empty folder to time the grid from
nothing.

    python benchmarks/reference_grid.py [--out results] [--seeds 0,1,2] [--jobs 2] [--cold]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchbd.leaderboard import leaderboard, load_folder

# The committed grid's defenses: those that finetune the poisoned model. The screening and
# pretraining-time defenses each pretrain a fresh model per cell (about 15 minutes of one core
# at the default size) and join the reference grid once it fits the time budget.
FINETUNE_DEFENSES = "none,finetune,cleanclip,inmodal,cleanclip_supervised"


def benchbd(*args: str, stdout=None) -> None:
    subprocess.run([sys.executable, "-m", "benchbd", *args], check=True, stdout=stdout)


def defense_checks(folder: Path) -> None:
    """The paper's shape, in numbers: cleanclip <= 0.20 ASR within 0.05 CA, finetune at least
    twice cleanclip's ASR, supervised <= 0.05."""
    rows = {(r.attack, r.defense): r for r in leaderboard(load_folder(folder)[0])}
    for attack in ("badnet", "blended"):
        if (attack, "cleanclip") not in rows:
            continue
        clean = rows[(attack, "cleanclip")].spreads
        fine = rows.get((attack, "finetune"))
        sup = rows.get((attack, "cleanclip_supervised"))
        ca_drop = clean["before_ca"].mean - clean["after_ca"].mean
        print(f"{attack}: cleanclip ASR {clean['after_asr'].text()} (target <= 0.20), "
              f"CA drop {ca_drop:.3f} (target <= 0.05)")  # fmt: skip
        if fine:
            ratio = fine.spreads["after_asr"].mean / max(clean["after_asr"].mean, 1e-9)
            print(f"{attack}: finetune ASR {fine.spreads['after_asr'].text()}, "
                  f"{ratio:.1f}x cleanclip's (target >= 2x)")  # fmt: skip
        if sup:
            print(f"{attack}: cleanclip_supervised ASR {sup.spreads['after_asr'].text()} "
                  f"(target <= 0.05)")  # fmt: skip
    # BadCLIP's claim: its backdoor survives CleanCLIP at the default recipe.
    badclip = rows.get(("badclip", "cleanclip"))
    if badclip:
        print(f"badclip: cleanclip ASR {badclip.spreads['after_asr'].text()} (BadCLIP's claim: "
              f">= 0.50), against badnet's "
              f"{rows[('badnet', 'cleanclip')].spreads['after_asr'].text()}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", default="2")
    parser.add_argument("--cold", action="store_true", help="start from an empty cache")
    args = parser.parse_args()
    if args.cold:
        os.environ["BENCHBD_CACHE"] = tempfile.mkdtemp(prefix="benchbd-cold-")
    start = time.perf_counter()
    benchbd("sweep", "--attacks", "all", "--defenses", FINETUNE_DEFENSES, "--seeds", args.seeds,
            "--jobs", args.jobs, "--out", str(args.out))  # fmt: skip
    minutes = (time.perf_counter() - start) / 60
    with open(args.out / "LEADERBOARD.md", "w") as handle:
        benchbd("table", str(args.out), "--format", "markdown", stdout=handle)
    benchbd("plot", str(args.out), "--out", str(args.out / "leaderboard.png"))
    print(f"grid: {minutes:.1f} min on {os.cpu_count()} CPU cores")
    defense_checks(args.out)


if __name__ == "__main__":
    main()
