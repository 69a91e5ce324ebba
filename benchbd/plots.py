"""Leaderboard plots: what a reader of a defense paper wants to see at a glance.

For every attack, CA against ASR with an arrow from the poisoned model to each defended model
(a good defense points left and stays level), and one bar chart of ASR after each defense with
seed error bars. matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

from benchbd.cache import atomic_write_bytes
from benchbd.leaderboard import Row, leaderboard


def _attack_rows(rows: list[Row]) -> dict[str, list[Row]]:
    by_attack: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_attack[row.attack].append(row)
    return dict(sorted(by_attack.items()))


def leaderboard_figure(results: list[dict]):
    """A figure with one CA-vs-ASR panel per attack and a bar chart of ASR after defense."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in leaderboard(results) if row.cells["after_asr"].mean is not None]
    by_attack = _attack_rows(rows)
    defenses = sorted({row.defense for row in rows})
    colours = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(defenses)}
    n = max(1, len(by_attack))
    fig = plt.figure(figsize=(3.6 * n, 7.2), layout="constrained")
    grid = fig.add_gridspec(2, n)
    for i, (attack, attack_rows) in enumerate(by_attack.items()):
        ax = fig.add_subplot(grid[0, i])
        before_asr = [r.cells["before_asr"].mean for r in attack_rows]
        before_ca = [r.cells["before_ca"].mean for r in attack_rows]
        x0, y0 = sum(before_asr) / len(before_asr), sum(before_ca) / len(before_ca)
        ax.scatter([x0], [y0], marker="X", s=90, color="black", zorder=3, label="poisoned")
        for row in attack_rows:
            x1, y1 = row.cells["after_asr"].mean, row.cells["after_ca"].mean
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops={"arrowstyle": "->", "color": colours[row.defense],
                                    "lw": 1.4})  # fmt: skip
            ax.errorbar([x1], [y1], xerr=[row.cells["after_asr"].std or 0],
                        yerr=[row.cells["after_ca"].std or 0], fmt="o",
                        color=colours[row.defense], label=row.defense, capsize=2)  # fmt: skip
        ax.set_title(attack)
        ax.set_xlabel("ASR (lower is better)")
        ax.set_ylabel("CA (higher is better)")
        ax.set_xlim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7, loc="lower left")
    bars = fig.add_subplot(grid[1, :])
    width = 0.8 / max(1, len(defenses))
    for j, defense in enumerate(defenses):
        xs, heights, errors = [], [], []
        for i, attack_rows in enumerate(by_attack.values()):
            for row in attack_rows:
                if row.defense == defense:
                    xs.append(i + (j - (len(defenses) - 1) / 2) * width)
                    heights.append(row.cells["after_asr"].mean)
                    errors.append(row.cells["after_asr"].std or 0.0)
        bars.bar(xs, heights, width, yerr=errors, capsize=2, color=colours[defense],
                 label=defense)  # fmt: skip
    bars.set_xticks(range(len(by_attack)), list(by_attack))
    bars.set_ylabel("ASR after defense (mean ± std over seeds)")
    bars.set_ylim(0, 1.05)
    bars.set_title("ASR after each defense")
    bars.legend(fontsize=8, ncols=min(len(defenses), 5))
    bars.grid(axis="y", alpha=0.3)
    return fig


def write_plot(results: list[dict], out: Path, dpi: int = 110) -> Path:
    """Render and write the PNG atomically (an interrupted plot never leaves half a file)."""
    import matplotlib.pyplot as plt

    fig = leaderboard_figure(results)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(Path(out), buffer.getvalue())
    return Path(out)
