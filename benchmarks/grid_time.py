"""How long a grid takes, from the timings its result files record.

For each (attack, defense) the median cell time over seeds (pretraining excluded; medians keep
a cell slowed by other jobs on the machine from skewing the figure), times the number of
seeds, summed: the grid with its poisoned models cached. Adding the median recorded
pretraining time for each (attack, seed) gives the grid from an empty cache.

    python benchmarks/grid_time.py [results]
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

from benchbd.leaderboard import load_folder


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
    warm = sum(statistics.median(times) * seeds for times in cells.values())
    each = statistics.median(pretrain) if pretrain else float("nan")
    print(f"{len(results)} cells, {len(models)} poisoned models")
    print(f"grid with poisoned models cached: {warm / 60:.1f} min")
    print(f"pretraining: {each:.0f} s per model (median of {len(pretrain)} recorded), "
          f"{len(models) * each / 60:.1f} min for all")  # fmt: skip
    print(f"grid from an empty cache: {(warm + len(models) * each) / 60:.1f} min")


if __name__ == "__main__":
    main()
