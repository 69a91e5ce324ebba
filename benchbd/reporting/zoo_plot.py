"""A zoo's model detectors as a picture: per detector, every test model's score, poisoned
against clean, with the threshold fixed on the validation part.

Why scores as dots and not ROC curves: a zoo's test part is a handful of models (4 + 4 in the
committed digits zoo), and an ROC curve of so few is a staircase of a few steps that hides
which model is out of order and by how much. The dots show every model: how wide the gap
between poisoned and clean scores is (a detector that separates by a hair and one that
separates by a mile have the same AUROC of 1.0), which attack a missed model carries (its
colour), and where the validation threshold falls, so TPR and FPR are read off the panel. One
panel per detector, each on its own score scale: detectors' scores are not comparable (a
p-value's complement, a trigger-size score). matplotlib's Agg backend: no display needed;
written atomically like the other plots.
"""

from __future__ import annotations

import math
from pathlib import Path

from benchbd.reporting.trade_off_plot import _write_png
from benchbd.reporting.zoo_frame import Detection, Zoo

CLEAN, POISONED = 0, 1
JITTER = 0.12  # the largest sideways shift of a dot, so equal scores do not hide each other


def _offsets(count: int) -> list[float]:
    """Evenly spread sideways shifts (no randomness: the same picture every time)."""
    if count < 2:
        return [0.0] * count
    return [-JITTER + 2 * JITTER * i / (count - 1) for i in range(count)]


def _panel(ax, detection: Detection, colours: dict[str, tuple]) -> None:
    test = sorted(detection.part("test"), key=lambda m: (str(m.get("attack")), m["score"]))
    clean = [m for m in test if m["clean"]]
    ax.scatter([CLEAN + dx for dx in _offsets(len(clean))], [m["score"] for m in clean],
               color="grey", marker="o", s=36, label="clean", zorder=3)  # fmt: skip
    poisoned = [m for m in test if not m["clean"]]  # by attack, then score
    for attack in sorted({str(m.get("attack")) for m in poisoned}):
        placed = [(POISONED + dx, m) for dx, m in zip(_offsets(len(poisoned)), poisoned,
                                                      strict=True)
                  if str(m.get("attack")) == attack]  # fmt: skip
        edges = ["black" if m.get("named_target_index") != m.get("target_index")
                 else colours[attack] for _, m in placed]  # fmt: skip
        ax.scatter([x for x, _ in placed], [m["score"] for _, m in placed], color=colours[attack],
                   marker="D", s=36, label=attack, zorder=3, edgecolors=edges)  # fmt: skip
    threshold = detection.metrics.get("threshold")
    if isinstance(threshold, (int, float)) and math.isfinite(threshold):
        ax.axhline(threshold, ls="--", lw=1.0, color="black", label="validation threshold")
    auroc = detection.metrics.get("auroc")
    title = detection.name
    if isinstance(auroc, (int, float)):
        title += f"\ntest AUROC {auroc:.3f} ({len(test) - len(clean)} + {len(clean)} models)"
    ax.set_title(title, fontsize=9)
    ax.set_xticks([CLEAN, POISONED], ["clean", "poisoned"])
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylabel("score (higher: more likely poisoned)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="best")


def zoo_figure(zoo: Zoo):
    """The figure: one panel per detector, in the order of the table (best test AUROC first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(zoo.detections, key=lambda d: (-_auroc(d), d.name))
    attacks = sorted({str(m.get("attack")) for d in order for m in d.models if not m["clean"]})
    colours = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(attacks)}
    n = max(1, len(order))
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 4.2), layout="constrained", squeeze=False)
    for ax, detection in zip(axes[0], order, strict=False):
        _panel(ax, detection, colours)
    fig.suptitle(f"{zoo.folder.name or zoo.folder}: test models' scores, poisoned against "
                 "clean (a black edge: the detector named another target)",
                 fontsize=9)  # fmt: skip
    return fig


def _auroc(detection: Detection) -> float:
    value = detection.metrics.get("auroc")
    return float(value) if isinstance(value, (int, float)) else -math.inf


def write_zoo_plot(zoo: Zoo, out: Path, dpi: int = 110) -> Path:
    """Render and write the PNG atomically (an interrupted plot never leaves half a file)."""
    return _write_png(zoo_figure(zoo), out, dpi)
