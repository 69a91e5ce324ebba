"""CleanCLIP's ablation on benchbd's data: ASR and CA after the defense against the weight of
the in-modal term (0 is plain finetuning), on the blended attack.

Each weight is a grid of its own run through `benchbd.engine.sweep` into one folder, so the script
resumes like a sweep. It writes the table (`benchbd table DIR --group-by
defense.params.inmodal_weight`) and a plot of ASR and CA against the weight.

    python benchmarks/inmodal_ablation.py [--attack blended] [--seeds 0,1,2]
        [--weights 0,0.5,1,2,4,8] [--jobs 2] [--out results/ablations/inmodal_weight]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchbd.core.cache import atomic_write_text
from benchbd.engine.grid import Grid
from benchbd.engine.sweep import sweep
from benchbd.reporting.leaderboard import load_folder, tabulate
from benchbd.reporting.leaderboard_tables import caption, render

GROUP = "defense.params.inmodal_weight"


def plot(rows, weights: list[float], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_weight = {float(row.groups[0]): row for row in rows}
    xs = [w for w in weights if w in by_weight]
    fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
    for key, label, marker in (("after_asr", "ASR", "o"), ("after_ca", "CA", "s")):
        ys = [by_weight[w].spreads[key].mean for w in xs]
        errs = [by_weight[w].spreads[key].half_width for w in xs]
        ax.errorbar(range(len(xs)), ys, yerr=errs, marker=marker, capsize=3, label=label)
    ax.set_xticks(range(len(xs)), [f"{w:g}" for w in xs])
    ax.set_xlabel("inmodal_weight (clip_weight = 1)")
    ax.set_ylabel("after cleanclip\n(mean, 95 % t interval over seeds)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"CleanCLIP in-modal weight ablation ({rows[0].attack})")
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attack", default="blended")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--weights", default="0,0.5,1,2,4,8")
    parser.add_argument("--jobs", type=int, default=2, help="cells side by side, as a sweep")
    parser.add_argument("--out", type=Path, default=Path("results/ablations/inmodal_weight"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    weights = [float(w) for w in args.weights.split(",")]
    for weight in weights:
        grid = Grid([args.attack], ["cleanclip"], seeds,
                    defense_params={"cleanclip": {"inmodal_weight": weight}})  # fmt: skip
        summary = sweep(grid, args.out, jobs=args.jobs)
        print(f"inmodal_weight {weight:g}: {summary.done} run, {summary.skipped} reused, "
              f"{len(summary.failed)} failed", flush=True)  # fmt: skip
    results = [r for r in load_folder(args.out)[0] if r["attack"]["name"] == args.attack]
    # one row per weight, the weights competing as every table ranks a defense's variants
    board = tabulate(results, group_by=[GROUP])
    table = render(board.rows, "markdown", [GROUP], note=caption(board.sort, board.tolerance))
    rows = sorted(board.rows, key=lambda row: float(row.groups[0]))
    atomic_write_text(args.out / "ABLATION.md", table)
    plot(rows, weights, args.out / "ablation.png")
    print(table)


if __name__ == "__main__":
    main()
