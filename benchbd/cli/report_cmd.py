"""`benchbd report DIR --out site/`: the leaderboard as a static site to read offline."""

from __future__ import annotations

from pathlib import Path

import typer

from benchbd.cli.errors import friendly_errors
from benchbd.cli.reading import warn


@friendly_errors
def report(
    folder: Path = typer.Argument(
        Path("results"), help="folder of result JSON files", readable=False
    ),  # benchbd says what is wrong with the folder, in one line
    out: Path = typer.Option(
        Path("site"), help="folder to write the site into (an earlier site there is replaced)"
    ),
    triggers: bool = typer.Option(
        True, "--triggers/--no-triggers", help="draw each attack's trigger on test images"
    ),
    images: int = typer.Option(6, min=1, max=16, help="test images in each trigger picture"),
) -> None:
    """Write a static HTML leaderboard: a sortable table with the seeds' spread, the CA-ASR
    plot, the trigger gallery and each row's recorded configuration."""
    from benchbd.report import write_site

    site = write_site(folder, out, triggers=triggers, images=images)
    warn(site.warnings)
    typer.echo(f"report: {site.page} ({site.rows} rows from {site.results} result files, "
               f"{site.triggers} trigger pictures)")  # fmt: skip
