"""Trade-off curves as a picture: per attack, each defense's ASR-CA curve over its strength.

A panel per attack (and per setting that splits its curves, such as a poison rate, in the
title). Each defense is one colour: its points joined in order of strength, each labelled
with its strength value, and its Pareto front as a dashed step line (the best CA reachable at
ASR <= t, the function `pareto_area` integrates). A defense run at one strength only is a
single marker. The undefended poisoned model is the black cross every curve starts from.
matplotlib's Agg backend: no display needed; written atomically like the other plots.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchbd.reporting.curves import Curve, curves
from benchbd.reporting.trade_off_plot import _write_png


def panels(found: Sequence[Curve]) -> dict[str, list[Curve]]:
    """Curves by panel title: the attack, then the settings that set its curves apart."""
    by_panel: dict[str, list[Curve]] = defaultdict(list)
    for curve in found:
        context = "\n".join(f"{path}={value}" for path, value in curve.context.items())
        by_panel[f"{curve.attack}\n{context}" if context else curve.attack].append(curve)
    return dict(by_panel)


def _tag(curve: Curve, point) -> str:
    """A point's strength as a short label: the value alone when one parameter varies."""
    if len(curve.parameters) == 1:
        return point.label().partition("=")[2]
    return point.label()


def curve_figure(source: Sequence[Mapping[str, Any]] | Sequence[Curve]):
    """The figure: one panel per attack (and setting), every defense's curve and front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = list(source) if all(isinstance(c, Curve) for c in source) else curves(source)
    by_panel = panels(found)
    names = sorted({c.defense for c in found})
    colours = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}
    n = max(1, len(by_panel))
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 4.4), layout="constrained", squeeze=False)
    for ax, (title, drawn) in zip(axes[0], by_panel.items(), strict=False):
        before = [c.before for c in drawn if c.before is not None]
        if before:
            x0 = sum(x for x, _ in before) / len(before)
            y0 = sum(y for _, y in before) / len(before)
            ax.scatter([x0], [y0], marker="X", s=90, color="black", zorder=4, label="poisoned")
        for curve in drawn:
            colour = colours[curve.defense]
            xs, ys = [p.asr for p in curve.points], [p.ca for p in curve.points]
            label = curve.defense + (f" ({', '.join(curve.parameters)})" if curve.parameters
                                     else "")  # fmt: skip
            ax.plot(xs, ys, marker="o", ms=4, lw=1.2, color=colour, label=label, zorder=3)
            if len(curve.points) < 2:
                continue
            for point in curve.points:
                ax.annotate(_tag(curve, point), (point.asr, point.ca), fontsize=6,
                            xytext=(3, 3), textcoords="offset points", color=colour)  # fmt: skip
            front = curve.front()
            steps_x = [p.asr for p in front] + [1.0]
            steps_y = [p.ca for p in front] + [front[-1].ca]
            ax.step(steps_x, steps_y, where="post", ls="--", lw=1.0, color=colour, alpha=0.7)
        ax.set_title(title)
        ax.set_xlabel("ASR (lower is better)")
        ax.set_ylabel("CA (higher is better)")
        ax.set_xlim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("trade-off curves: points by strength, dashed: Pareto front", fontsize=9)
    return fig


def write_curve_plot(source: Sequence[Mapping[str, Any]] | Sequence[Curve], out: Path,
                     dpi: int = 110) -> Path:  # fmt: skip
    """The curves as a PNG, written atomically (an interrupted plot never leaves half a file)."""
    return _write_png(curve_figure(source), out, dpi)
