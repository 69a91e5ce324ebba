"""How long a grid takes, from the timings its result files record.

For each (attack, defense) the median cell time over seeds (pretraining excluded; medians keep
a cell slowed by other jobs on the machine from skewing the figure), times the number of
seeds, summed: the grid's cell time with its poisoned models cached. Adding the median
recorded pretraining time for each (attack, seed) gives the cell time from an empty cache.
Cells that ran with fewer threads than this machine has cores ran side by side (`--jobs`), so
the wall-clock estimate divides by cores // threads. The measured wall clock of a whole grid
is what `benchmarks/reference_grid.py` prints; this script explains where it goes.

    python benchmarks/grid_time.py [results]
"""

from __future__ import annotations

import os
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from benchbd.reporting.leaderboard import load_folder


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    results, _ = load_folder(folder)
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    pretrain: list[float] = []
    models = {(r["attack"]["name"], r["seed"]) for r in results}
    for r in results:
        t = r["timings"]
        trained = not r["pretrain_cached"]
        cells[(r["attack"]["name"], r["defense"]["name"])].append(
            t["total_s"] - (t["pretrain_s"] if trained else 0.0)
        )
        if trained:
            pretrain.append(t["pretrain_s"])
    seeds = len({r["seed"] for r in results})
    threads = max(r.get("runtime", {}).get("threads") or os.cpu_count() or 1 for r in results)
    side_by_side = max(1, (os.cpu_count() or 1) // threads)
    warm = sum(statistics.median(times) * seeds for times in cells.values())
    each = statistics.median(pretrain) if pretrain else float("nan")
    cold = warm + len(models) * each
    print(f"{len(results)} cells, {len(models)} poisoned models, {threads} thread(s) a cell, "
          f"{side_by_side} cell(s) at a time on {os.cpu_count()} cores")  # fmt: skip
    print(f"cell time with poisoned models cached: {warm / 60:.1f} min")
    print(f"pretraining: {each:.0f} s per model (median of {len(pretrain)} recorded), "
          f"{len(models) * each / 60:.1f} min for all")  # fmt: skip
    print(f"cell time from an empty cache: {cold / 60:.1f} min")
    print(f"wall clock, estimated: {warm / side_by_side / 60:.1f} min cached, "
          f"{cold / side_by_side / 60:.1f} min from an empty cache")  # fmt: skip


if __name__ == "__main__":
    main()
