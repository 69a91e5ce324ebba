"""`benchbd table ZOO_DIR` and `benchbd plot ZOO_DIR`: a zoo's model detectors, read from the
detection files `benchbd zoo --detect` wrote (benchbd.reporting.zoo_frame), never the engine.

The table and plot commands hand a folder here when it is a zoo folder; the options that only
mean something for run results are refused with one line, not ignored.
"""

from __future__ import annotations

from pathlib import Path

import typer

from benchbd.cli.reading import warn
from benchbd.reporting.zoo_frame import read_zoo, zoo_frame
from benchbd.reporting.zoo_plot import write_zoo_plot
from benchbd.reporting.zoo_table import HEADERS, ZOO_FORMATS, best, render, texts


def refuse_options(command: str, given: list[str]) -> None:
    """A zoo folder's table and plot have fixed contents: no run-result option applies."""
    if given:
        raise ValueError(f"{', '.join(given)}: not for a zoo folder; benchbd {command} ZOO_DIR "
                         "shows one row per model detector (docs/cli.md)")  # fmt: skip


def zoo_table(folder: Path, fmt: str) -> None:
    """Print the detector table: rich by default, or any of ZOO_FORMATS as text."""
    if fmt not in ZOO_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(ZOO_FORMATS)}")
    zoo = read_zoo(folder)
    frame = zoo_frame(zoo)
    if fmt != "rich":
        text = render(frame, fmt, zoo.split_rule)
        warn(zoo.warnings)
        typer.echo(text, nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    warn(zoo.warnings)
    view = Table(title=f"benchbd zoo: {folder} ({zoo.models} models, {len(frame)} detectors)",
                 caption=f"Split rule: {zoo.split_rule}" if zoo.split_rule else None)  # fmt: skip
    for i, header in enumerate(HEADERS):
        view.add_column(header, justify="left" if i == 0 else "right")
    for line, top in zip(texts(frame), best(frame), strict=True):
        view.add_row(*line, style="bold green" if top else None)
    Console().print(view)


def zoo_plot(folder: Path, out: Path) -> None:
    zoo = read_zoo(folder)
    path = write_zoo_plot(zoo, out)
    warn(zoo.warnings)
    typer.echo(f"plot: {path}")
