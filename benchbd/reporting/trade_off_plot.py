"""The leaderboard as a trade-off picture: what a reader of a defense paper wants at a glance.

For every attack, CA against ASR with an arrow from the poisoned model to each defended model
(a good defense points left and stays level), and one bar chart of ASR after each defense with
the 95 % t interval over seeds as error bars. The ranking rule of the tables (reporting.ranking)
marks the picture too: the best row of each panel is a star, a row whose CA drop exceeds the
tolerance or whose model never trained is hollow (hatched bar) and says "(unranked)". An arrow
starts at its own row's poisoned model on the classifier its after uses, so a linear-head
defense's arrow starts at the probe of the poisoned encoder (◆), never at the zero-shot ✕.
When the table splits an attack's rows by a setting (two poison rates, say),
each setting gets its own panel and bar group, titled with it, so no two experiments share a
point. A mean that is not a number (every seed NaN) is not drawn. matplotlib's Agg backend: no
display needed.

Screening defenses also get a ROC picture: one panel per attack, one curve per screen (the mean
over seeds of the 101-point curve each result file keeps under `extra.screen.roc`), labelled
with its mean detection AUROC. Settings that differ between results of one attack and screen
(two poison rates, say) give separate curves, labelled with them.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

from benchbd.core.cache import atomic_write_bytes
from benchbd.reporting.board import Board, Row
from benchbd.reporting.experiments import experiment_key, settings, varying
from benchbd.reporting.leaderboard import tabulate
from benchbd.reporting.ranking import DEFAULT_CA_TOLERANCE
from benchbd.reporting.result_frame import ABSENT


def _panels(board: Board, rows: list[Row]) -> dict[str, list[Row]]:
    """Rows by panel title: the attack, and the values of the group columns that separate
    rankings (a defense's own parameters do not: its variants share the panel they compete
    in)."""
    shown = [i for i, name in enumerate(board.group_by) if name in board.scope]
    by_panel: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        by_panel[(row.attack, tuple(row.groups[i] for i in shown))].append(row)
    titled = {}
    # attacks in name order; an attack's settings in table order (the sort is stable)
    for (attack, groups), panel_rows in sorted(by_panel.items(), key=lambda item: item[0][0]):
        names = [board.group_by[i] for i in shown]
        settings = "\n".join(f"{n}={v}" for n, v in zip(names, groups, strict=True))
        titled[f"{attack}\n{settings}" if settings else attack] = panel_rows
    return titled


def _variant(board: Board, row: Row) -> str:
    """A defense's own settings that tell its variants apart ("start=0.5"), or ""."""
    own = [f"{name.rpartition('.')[2]}={value}" for name, value in
           zip(board.group_by, row.groups, strict=True)
           if name not in board.scope and value != ABSENT]  # fmt: skip
    return ", ".join(own)


def _drawn(row: Row) -> bool:
    return row.spreads["after_asr"].mean is not None and row.spreads["after_ca"].mean is not None


def _label(board: Board, row: Row) -> str:
    """A defense's legend entry: its variant, ★ for the best, "(unranked)" for a row the rule
    leaves out."""
    variant = _variant(board, row)
    name = f"{row.defense} ({variant})" if variant else row.defense
    if row.best:
        return f"{name} ★"
    return name if row.eligible else f"{name} (unranked)"


def _before(row: Row) -> tuple[float, float] | None:
    x, y = row.spreads["before_asr"].mean, row.spreads["before_ca"].mean
    return None if x is None or y is None else (x, y)


def _poisoned_markers(ax, rows: list[Row]) -> None:
    """The poisoned model once per classifier basis: ✕ zero-shot, ◆ the linear probe of a
    linear-head defense's poisoned encoder (its own before, benchbd.reporting.result_frame)."""
    for basis, marker, label in (("zero-shot", "X", "poisoned"),
                                 ("linear-probe", "D", "poisoned (linear probe)")):  # fmt: skip
        points = [p for row in rows if row.basis == basis and (p := _before(row))]
        if points:
            x0 = sum(x for x, _ in points) / len(points)
            y0 = sum(y for _, y in points) / len(points)
            ax.scatter([x0], [y0], marker=marker, s=70, color="black", zorder=3, label=label)


def leaderboard_figure(source: list[dict] | Board, ca_tolerance: float = DEFAULT_CA_TOLERANCE):
    """A figure with one CA-vs-ASR panel per attack (and setting) and a bar chart of ASR after
    defense; `source` is result dicts or a `tabulate` board already made of them. Each arrow
    starts at its row's own poisoned model, on the classifier its after uses; error bars are
    the 95 % t intervals over seeds; rows the ranking rule leaves out (reporting.ranking) are
    hollow, hatched and labelled "(unranked)", the best of each panel is starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = source if isinstance(source, Board) else tabulate(source, ca_tolerance=ca_tolerance)
    rows = [row for row in board.rows if _drawn(row)]
    by_attack = _panels(board, rows)
    defenses = sorted({row.defense for row in rows})
    colours = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(defenses)}
    n = max(1, len(by_attack))
    fig = plt.figure(figsize=(3.6 * n, 7.2), layout="constrained")
    grid = fig.add_gridspec(2, n)
    for i, (title, attack_rows) in enumerate(by_attack.items()):
        ax = fig.add_subplot(grid[0, i])
        _poisoned_markers(ax, attack_rows)
        for row in attack_rows:
            x1, y1 = row.spreads["after_asr"].mean, row.spreads["after_ca"].mean
            colour = colours[row.defense]
            start = _before(row)
            if start is not None:
                ax.annotate("", xy=(x1, y1), xytext=start,
                            arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.4,
                                        "ls": "-" if row.eligible else ":"})  # fmt: skip
            ax.errorbar([x1], [y1], xerr=[row.spreads["after_asr"].half_width],
                        yerr=[row.spreads["after_ca"].half_width],
                        fmt="*" if row.best else "o", markersize=11 if row.best else 6,
                        color=colour, mfc=colour if row.eligible else "white",
                        label=_label(board, row), capsize=2)  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("ASR (lower is better)")
        ax.set_ylabel("CA (higher is better)")
        ax.set_xlim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower left")
    bars = fig.add_subplot(grid[1, :])
    slots = sorted({(row.defense, _variant(board, row)) for row in rows})
    width = 0.8 / max(1, len(slots))
    for j, (defense, variant) in enumerate(slots):
        labelled = False
        for i, attack_rows in enumerate(by_attack.values()):
            for row in attack_rows:
                if (row.defense, _variant(board, row)) != (defense, variant):
                    continue
                name = f"{defense} ({variant})" if variant else defense
                bars.bar([i + (j - (len(slots) - 1) / 2) * width],
                         [row.spreads["after_asr"].mean], width,
                         yerr=[row.spreads["after_asr"].half_width], capsize=2,
                         color=colours[defense] if row.eligible else "white",
                         edgecolor=colours[defense], hatch=None if row.eligible else "//",
                         label=None if labelled else name)  # fmt: skip
                labelled = True
    bars.set_xticks(range(len(by_attack)), list(by_attack))
    bars.set_ylabel("ASR after defense\n(mean, 95 % t interval over seeds)")
    bars.set_ylim(0, 1.05)
    bars.set_title(f"ASR after each defense (hatched: unranked, CA drop > "
                   f"{board.tolerance:g} or untrained)")  # fmt: skip
    bars.legend(fontsize=8, ncols=min(len(slots), 5))
    bars.grid(axis="y", alpha=0.3)
    return fig


def _roc_of(result: dict) -> dict | None:
    return ((result.get("extra") or {}).get("screen") or {}).get("roc")


def screened(results: list[dict]) -> list[dict]:
    """The results of screening defenses that kept a ROC curve."""
    return [r for r in results if _roc_of(r)]


def roc_curves(results: list[dict]) -> dict[str, list[tuple[str, list[float], list[float]]]]:
    """Per attack, (label, FPR grid, mean TPR over seeds) of each screen's experiment; the
    label names the screen, its mean AUROC, and the settings that tell apart experiments of the
    same attack and screen."""
    experiments: dict[tuple, list[dict]] = defaultdict(list)
    for result in screened(results):
        experiments[experiment_key(settings(result))].append(result)
    by_pair: dict[tuple[str, str], list[list[dict]]] = defaultdict(list)
    for group in experiments.values():
        by_pair[(group[0]["attack"]["name"], group[0]["defense"]["name"])].append(group)
    curves: dict[str, list[tuple[str, list[float], list[float]]]] = defaultdict(list)
    for (attack, defense), groups in sorted(by_pair.items()):
        differ = sorted(varying([[settings(g[0]) for g in groups]]))
        for group in groups:
            fpr = _roc_of(group[0])["fpr"]
            tprs = [_roc_of(r)["tpr"] for r in group]
            mean = [sum(column) / len(column) for column in zip(*tprs, strict=True)]
            aurocs = [r["metrics"]["detection"]["auroc"] for r in group]
            aurocs = [a for a in aurocs if a is not None]
            label = defense
            if aurocs:
                label += f" (AUROC {sum(aurocs) / len(aurocs):.3f})"
            flat = settings(group[0])
            label += "".join(f"\n{path}={flat.get(path, '-')}" for path in differ)
            curves[attack].append((label, fpr, mean))
    return dict(sorted(curves.items()))


def roc_figure(results: list[dict]):
    """One ROC panel per attack with a curve per screen; chance is the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = roc_curves(results)
    n = max(1, len(curves))
    fig, axes = plt.subplots(1, n, figsize=(3.8 * n, 3.8), layout="constrained", squeeze=False)
    for ax, (attack, drawn) in zip(axes[0], curves.items(), strict=False):
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
        for label, fpr, tpr in drawn:
            ax.step(fpr, tpr, where="post", label=label, lw=1.4)
        ax.set_title(attack)
        ax.set_xlabel("false-positive rate (clean pairs dropped)")
        ax.set_ylabel("true-positive rate (poisons dropped)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return fig


def _write_png(fig, out: Path, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(Path(out), buffer.getvalue())
    return Path(out)


def write_plot(source: list[dict] | Board, out: Path, dpi: int = 110,
               ca_tolerance: float = DEFAULT_CA_TOLERANCE) -> Path:  # fmt: skip
    """Render and write the PNG atomically (an interrupted plot never leaves half a file)."""
    return _write_png(leaderboard_figure(source, ca_tolerance), out, dpi)


def write_roc_plot(results: list[dict], out: Path, dpi: int = 110) -> Path:
    """The screens' ROC picture as a PNG, written atomically."""
    return _write_png(roc_figure(results), out, dpi)
