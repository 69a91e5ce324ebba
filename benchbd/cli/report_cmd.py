"""`benchbd report DIR --out site/`: the leaderboard as a static site to read offline.

Reporting lays the site out from result files alone; the trigger gallery's images are made
here, by the engine (`trigger_examples`, as `benchbd show` makes them), which this module
imports only when a gallery is asked for: `--no-triggers` reads files and imports no engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from benchbd.cli.errors import friendly_errors
from benchbd.cli.reading import CA_TOLERANCE_HELP, ca_tolerance, warn
from benchbd.reporting.report import write_site, write_sites

if TYPE_CHECKING:
    import torch


def trigger_images(result: Mapping[str, Any], images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean test images and the same images triggered, for the configuration a result
    file records (the site's `TriggerExamples`): the trigger that run measured. The engine is
    imported here, on the first picture, not with the command."""
    from benchbd.engine.poisoned_model import trigger_examples
    from benchbd.engine.run_config import RunConfig

    _, clean, triggered = trigger_examples(RunConfig.from_result(result), images)
    return clean, triggered


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
        "OUT/<its path, / as ->/, every zoo folder's model detectors likewise, and an index "
        "page OUT/index.html that links them",
    ),
) -> None:
    """Write a static HTML leaderboard: a sortable table with each mean's 95 % interval and
    rank, the CA-ASR plot, the trigger gallery and each row's recorded configuration."""
    limit = ca_tolerance(tolerance)
    examples = trigger_images if triggers else None
    sites = (
        write_sites(folder, out, examples, images, limit)
        if every
        else [write_site(folder, out, examples, images=images, ca_tolerance=limit)]
    )
    for site in sites:
        warn([f"{site.page.parent.name}: {line}" if every else line for line in site.warnings])
        if site.zoo:
            typer.echo(f"report: {site.page} (a zoo: {site.rows} model detectors over "
                       f"{site.results} models)")  # fmt: skip
            continue
        typer.echo(f"report: {site.page} ({site.rows} rows from {site.results} result files, "
                   f"{site.triggers} trigger pictures)")  # fmt: skip
    if every:
        typer.echo(f"report: {out / 'index.html'} (an index of {len(sites)} grids)")
