"""`benchbd report DIR --out site/`: the leaderboard as a static site to read offline."""

from __future__ import annotations

from pathlib import Path

import typer

from benchbd.cli.errors import friendly_errors
from benchbd.cli.reading import CA_TOLERANCE_HELP, ca_tolerance, warn


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
    tolerance: str = typer.Option(None, "--ca-tolerance", help=CA_TOLERANCE_HELP),
    every: bool = typer.Option(
        False,
        "--all",
        help="every folder of result files under FOLDER (itself included), one page each in "
        "OUT/<its path, / as ->/, and an index page OUT/index.html that links them",
    ),
) -> None:
    """Write a static HTML leaderboard: a sortable table with each mean's 95 % interval and
    rank, the CA-ASR plot, the trigger gallery and each row's recorded configuration."""
    from benchbd.reporting.report import write_site, write_sites

    limit = ca_tolerance(tolerance)
    sites = (
        write_sites(folder, out, triggers, images, limit)
        if every
        else [write_site(folder, out, triggers=triggers, images=images, ca_tolerance=limit)]
    )
    for site in sites:
        warn([f"{site.page.parent.name}: {line}" if every else line for line in site.warnings])
        typer.echo(f"report: {site.page} ({site.rows} rows from {site.results} result files, "
                   f"{site.triggers} trigger pictures)")  # fmt: skip
    if every:
        typer.echo(f"report: {out / 'index.html'} (an index of {len(sites)} grids)")
