"""`benchbd plot DIR --out leaderboard.png`: the leaderboard as a picture, and, when the folder
holds results of screening defenses, their ROC curves per attack beside it; when it holds a
defense at several strengths, the trade-off curves (benchbd.reporting.curves) too."""

from __future__ import annotations

from pathlib import Path

import typer

from benchbd.cli.errors import friendly_errors
from benchbd.cli.reading import CA_TOLERANCE_HELP, ca_tolerance, read_results, warn
from benchbd.cli.zoo_views import refuse_options, zoo_plot
from benchbd.reporting.curve_plot import write_curve_plot
from benchbd.reporting.curves import curves as find_curves
from benchbd.reporting.curves import has_curves
from benchbd.reporting.leaderboard import tabulate
from benchbd.reporting.trade_off_plot import screened, write_plot, write_roc_plot
from benchbd.reporting.zoo_frame import is_zoo_folder


@friendly_errors
def plot(
    folder: Path = typer.Argument(
        Path("results"), help="folder of result JSON files", readable=False
    ),  # benchbd says what is wrong with the folder, in one line
    out: Path = typer.Option(Path("leaderboard.png"), help="PNG file to write"),
    filter: list[str] = typer.Option([], "--filter", help="FIELD=VALUE; repeatable"),
    roc: Path = typer.Option(
        None, help="PNG for the screening defenses' ROC curves [OUT's name with -roc]"
    ),
    curves: Path = typer.Option(
        None,
        help="PNG for the trade-off curves of defenses run at several strengths [OUT's name "
        "with -curves]",
    ),
    tolerance: str = typer.Option(None, "--ca-tolerance", help=CA_TOLERANCE_HELP),
) -> None:
    """CA against ASR per attack (arrows from poisoned to defended) and ASR bars per defense;
    the ROC curves of screening defenses per attack, and the ASR-CA curve of each defense run
    at several strengths with its Pareto front, when there are any. The ranking rule of the
    tables marks the points: the best starred, unranked rows hollow. A zoo folder (benchbd zoo
    --detect) gives one panel per model detector instead: every test model's score, poisoned
    against clean, with the threshold fixed on the validation models."""
    if is_zoo_folder(folder):
        named = {"--filter": filter, "--roc": roc, "--curves": curves, "--ca-tolerance": tolerance}
        refuse_options("plot", [name for name, value in named.items() if value])
        return zoo_plot(folder, out)
    limit = ca_tolerance(tolerance)
    results, skipped = read_results(folder, filter)
    board = tabulate(results, ca_tolerance=limit)
    path = write_plot(board, out)
    warn(skipped + board.warnings)
    typer.echo(f"plot: {path}")
    if screened(results):
        roc_path = roc if roc is not None else out.with_name(f"{out.stem}-roc{out.suffix}")
        typer.echo(f"roc: {write_roc_plot(results, roc_path)}")
    found = find_curves(results)
    if has_curves(found):
        curves_path = curves or out.with_name(f"{out.stem}-curves{out.suffix}")
        typer.echo(f"curves: {write_curve_plot(found, curves_path)}")
