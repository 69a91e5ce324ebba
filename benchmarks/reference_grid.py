"""The reference results: the committed grids on the embedded data, their tables and plots.

Runs, as a user would, and times each grid:

    benchbd sweep --grid results/grid.toml --jobs 2 --out OUT              # classic attacks
    benchbd sweep --grid results/frontier/grid.toml --jobs 2 --out OUT/frontier
    benchbd table OUT --format markdown > OUT/LEADERBOARD.md               # and for frontier/
    benchbd plot OUT --out OUT/leaderboard.png                             # and for frontier/

then prints the defense checks the README reports (CleanCLIP against plain finetuning and
supervised finetuning on badnet and blended, BadCLIP after CleanCLIP). Poisoned models already
in the cache are reused, as in any sweep; `--cold` first points the cache at an empty folder
to time the grids from nothing.

The whole grown grid (8 attacks x 5 defenses x 3 seeds) does not fit an hour on 2 cores
(121 min estimated); `--seeds 0` is the tier that fits one (one seed of everything: 41.2 min
measured from an empty cache on 2 idle cores).
With `--out` a new folder and `--compare results`, each regenerated cell is checked against
the committed file of the same fingerprint: the same CA and ASR to the last digit when the
thread counts match (a sweep with `--jobs 2` on 2 cores gives every cell one thread, as the
committed grids had).

    python benchmarks/reference_grid.py [--out results] [--seeds 0,1,2] [--jobs 2] [--cold]
        [--compare results]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchbd.reporting.leaderboard import leaderboard, load_folder

ROOT = Path(__file__).resolve().parent.parent
# (grid file, its folder under --out): the classic attacks' grid and the frontier attacks'.
# The screening and pretraining-time defenses pretrain a fresh model per cell (6-11 minutes
# of one core each at the default size); their grids are results/digits/ and results/stages/.
GRIDS = [(ROOT / "results" / "grid.toml", "."), (ROOT / "results" / "frontier" / "grid.toml",
                                                  "frontier")]  # fmt: skip


def benchbd(*args: str, stdout=None) -> None:
    subprocess.run([sys.executable, "-m", "benchbd", *args], check=True, stdout=stdout)


def defense_checks(folder: Path, frontier: Path) -> None:
    """The paper's shape, in numbers: cleanclip <= 0.20 ASR within 0.05 CA, finetune at least
    twice cleanclip's ASR, supervised <= 0.05; and BadCLIP's claim."""
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
    if not frontier.is_dir():
        return
    for row in leaderboard(load_folder(frontier)[0]):
        if row.defense == "cleanclip":
            print(f"{row.attack}: cleanclip ASR {row.spreads['after_asr'].text()} (BadCLIP's "
                  "claim for its attack: >= 0.50)")  # fmt: skip


def compare(out: Path, committed: Path) -> None:
    """Each result in `out` against the committed result of the same fingerprint."""
    mine = [r for _, sub in GRIDS for r in load_folder(out / sub)[0]]
    theirs = {r["fingerprint"]: r for _, sub in GRIDS for r in load_folder(committed / sub)[0]}
    same, worst = 0, 0.0
    missing = []
    for result in mine:
        other = theirs.get(result["fingerprint"])
        if other is None:
            missing.append(result["fingerprint"])
            continue
        gaps = [abs(result["metrics"][when][name] - other["metrics"][when][name])
                for when in ("before", "after") for name in ("ca", "asr")]  # fmt: skip
        worst = max(worst, *gaps)
        same += int(max(gaps) == 0.0)
    print(f"against {committed}: {len(mine) - len(missing)} cells compared, {same} "
          f"identical, largest CA/ASR difference {worst:.4f}; "
          f"{len(missing)} with no committed file")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--seeds", default=None, help="seeds to run [each grid's: 0,1,2]")
    parser.add_argument("--jobs", default="2")
    parser.add_argument("--cold", action="store_true", help="start from an empty cache")
    parser.add_argument("--compare", type=Path, help="committed results to check against")
    args = parser.parse_args()
    if args.cold:
        os.environ["BENCHBD_CACHE"] = tempfile.mkdtemp(prefix="benchbd-cold-")
    total = 0.0
    for grid, sub in GRIDS:
        folder = args.out / sub
        seeds = ["--seeds", args.seeds] if args.seeds else []
        start = time.perf_counter()
        benchbd("sweep", "--grid", str(grid), *seeds, "--jobs", args.jobs, "--out", str(folder))
        minutes = (time.perf_counter() - start) / 60
        total += minutes
        with open(folder / "LEADERBOARD.md", "w") as handle:
            benchbd("table", str(folder), "--format", "markdown", stdout=handle)
        benchbd("plot", str(folder), "--out", str(folder / "leaderboard.png"))
        print(f"{grid.relative_to(ROOT)}: {minutes:.1f} min on {os.cpu_count()} CPU cores")
    print(f"all grids: {total:.1f} min")
    defense_checks(args.out, args.out / "frontier")
    if args.compare:
        compare(args.out, args.compare)


if __name__ == "__main__":
    main()
