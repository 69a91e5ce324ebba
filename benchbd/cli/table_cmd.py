"""`benchbd table DIR`: the leaderboard of a folder of result files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from benchbd.cli.errors import friendly_errors
from benchbd.leaderboard import FORMATS, headers, leaderboard, load_folder, render, row_texts


@friendly_errors
def table(
    folder: Path = typer.Argument(Path("results"), help="folder of result JSON files"),
    format: str = typer.Option("rich", "--format", "-f", help="|".join(FORMATS)),
) -> None:
    """Print the leaderboard: rows attack x defense, CA and ASR before and after, DER."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    results, warnings = load_folder(folder)
    for warning in warnings:
        typer.echo(f"benchbd: warning: {warning}", err=True)
    rows = leaderboard(results)
    if format != "rich":
        typer.echo(render(rows, format), nl=False)
        return
    view = Table(title=f"benchbd leaderboard: {folder} ({len(results)} runs)")
    for i, header in enumerate(headers()):
        view.add_column(header, justify="left" if i < 2 else "right")
    for row in rows:
        view.add_row(*row_texts(row))
    Console().print(view)
