"""Pictures of triggers: clean images, triggered images, and their amplified difference.

The one drawing of a trigger, for `benchbd show` and the site's gallery alike; the images come
from the caller (the engine makes them), and torch and matplotlib are imported only by those
who draw.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchbd.core.cache import atomic_write_bytes

if TYPE_CHECKING:
    import torch


def trigger_title(attack: str, params: Mapping[str, Any]) -> str:
    """The attack and its parameters, in the order given: 'blended (alpha=0.2, pattern=noise)'."""
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in params.items())  # fmt: skip
    return f"{attack} ({shown})" if shown else attack


def trigger_grid(clean: torch.Tensor, triggered: torch.Tensor, title: str, path: Path) -> None:
    """Write a PNG with three rows: clean, triggered, |difference| scaled to full range."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    diff = (triggered.float() - clean.float()).abs().amax(dim=1)
    scale = diff.max().item() or 1.0
    n = len(clean)
    figure, axes = plt.subplots(3, n, figsize=(1.3 * n, 4.4), squeeze=False)
    rows = [
        ("clean", [img.permute(1, 2, 0).numpy() for img in clean], None),
        ("triggered", [img.permute(1, 2, 0).numpy() for img in triggered], None),
        (f"|diff| x{255 / scale:.0f}", [(d / scale).numpy() for d in diff], "magma"),
    ]
    for r, (label, pictures, cmap) in enumerate(rows):
        for c, picture in enumerate(pictures):
            axis = axes[r][c]
            axis.imshow(picture, cmap=cmap, vmin=0, vmax=1 if cmap else None,
                        interpolation="nearest")  # fmt: skip
            axis.set_xticks([])
            axis.set_yticks([])
            if c == 0:
                axis.set_ylabel(label, fontsize=9)
    figure.suptitle(textwrap.fill(title, width=int(16 * n)), fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write_bytes(Path(path), buffer.getvalue())
