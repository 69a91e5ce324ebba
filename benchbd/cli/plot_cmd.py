"""`benchbd plot DIR --out leaderboard.png`: the leaderboard as a picture."""

from __future__ import annotations

from pathlib import Path

import typer

from benchbd.cli.errors import friendly_errors
from benchbd.cli.reading import read_results, warn


@friendly_errors
def plot(
    folder: Path = typer.Argument(
        Path("results"), help="folder of result JSON files", readable=False
    ),  # benchbd says what is wrong with the folder, in one line
    out: Path = typer.Option(Path("leaderboard.png"), help="PNG file to write"),
    filter: list[str] = typer.Option([], "--filter", help="FIELD=VALUE; repeatable"),
) -> None:
    """CA against ASR per attack (arrows from poisoned to defended) and ASR bars per defense."""
    from benchbd.leaderboard import tabulate
    from benchbd.trade_off_plot import write_plot

    results, skipped = read_results(folder, filter)
    board = tabulate(results)
    path = write_plot(board, out)
    warn(skipped + board.warnings)
    typer.echo(f"plot: {path}")
