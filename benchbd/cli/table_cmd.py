"""`benchbd table DIR`: the leaderboard of a folder of result files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from benchbd.cli.errors import friendly_errors
from benchbd.cli.reading import read_results, warn
from benchbd.leaderboard import (
    FORMATS,
    SORT_CHOICES,
    check_sort,
    headers,
    render,
    row_texts,
    tabulate,
)


@friendly_errors
def table(
    folder: Path = typer.Argument(
        Path("results"), help="folder of result JSON files", readable=False
    ),  # benchbd says what is wrong with the folder, in one line
    format: str = typer.Option("rich", "--format", "-f", help="|".join(FORMATS)),
    group_by: list[str] = typer.Option(
        [],
        "--group-by",
        "-g",
        help="recorded field to split rows by (dataset, model, "
        "poison_rate, target, or a dotted path like defense.params.epochs); repeatable",
    ),  # fmt: skip
    filter: list[str] = typer.Option(
        [], "--filter", help="FIELD=VALUE: keep only matching results; repeatable"
    ),
    sort: str = typer.Option("after_asr", help="|".join(SORT_CHOICES)),
    visibility: bool = typer.Option(
        False,
        "--visibility",
        help="add the trigger's visibility on the test images: PSNR (dB), SSIM and L-inf "
        "(a fraction of 255), means over seeds; - for files that do not record it",
    ),
) -> None:
    """Print the leaderboard: rows attack x defense, CA and ASR before and after, DER, seeds.
    The best defense of each attack is in bold. Results whose settings differ are rows apart,
    with the differing settings as columns and a warning."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    check_sort(sort)
    results, skipped = read_results(folder, filter)
    board = tabulate(results, group_by=group_by, sort=sort)
    warn(skipped + board.warnings)
    if format != "rich":
        typer.echo(render(board.rows, format, board.group_by, visibility), nl=False)
        return
    view = Table(title=f"benchbd leaderboard: {folder} ({len(results)} runs)")
    n_left = len(board.group_by) + 2
    for i, header in enumerate(headers(board.group_by, visibility)):
        view.add_column(header, justify="left" if i < n_left else "right")
    for row in board.rows:
        view.add_row(*row_texts(row, visibility), style="bold green" if row.best else None)
    Console().print(view)
