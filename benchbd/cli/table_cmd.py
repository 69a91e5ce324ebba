"""`benchbd table DIR`: the leaderboard of a folder of result files."""

from __future__ import annotations

from pathlib import Path

import typer

from benchbd.cli.errors import friendly_errors
from benchbd.cli.reading import CA_TOLERANCE_HELP, ca_tolerance, read_results, warn
from benchbd.cli.zoo_views import refuse_options, zoo_table
from benchbd.reporting import curves as trade_off
from benchbd.reporting.leaderboard import tabulate
from benchbd.reporting.leaderboard_tables import (
    caption,
    headers,
    per_seed_headers,
    per_seed_records,
    per_seed_texts,
    render,
    render_per_seed,
    row_texts,
)
from benchbd.reporting.table_columns import SORT_CHOICES, check_sort, default_sort, parse_columns
from benchbd.reporting.table_writers import FORMATS
from benchbd.reporting.zoo_frame import is_zoo_folder

COLUMNS_HELP = (
    "metric columns to show, in order: comma-separated or repeated (default "
    f"{','.join(SORT_CHOICES)}). Any number a result file records under metrics.before.NAME or "
    "metrics.after.NAME is the column before_NAME or after_NAME, e.g. after_ra, after_ca_top5 or "
    "a new metric such as after_recall_at_1 (the dotted path works too); der; psnr_db, ssim, "
    "linf. A name the files do not record is an error that lists the ones they do"
)
SORT_HELP = (
    "the column to rank by: one of those shown (default after_asr, or the first of --columns "
    "when they leave it out). The direction follows the metric (benchbd.core.results."
    "HIGHER_IS_BETTER: ASR best low; CA, RA and DER best high); a metric that declares none "
    "ranks high first, with a warning"
)


@friendly_errors
def table(
    folder: Path = typer.Argument(
        Path("results"), help="folder of result JSON files", readable=False
    ),  # benchbd says what is wrong with the folder, in one line
    format: str = typer.Option(
        "rich", "--format", "-f", help="|".join(FORMATS) + " (a zoo folder: json too)"
    ),
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
    columns: list[str] = typer.Option([], "--columns", "-c", help=COLUMNS_HELP),
    sort: str | None = typer.Option(None, "--sort", help=SORT_HELP),
    visibility: bool = typer.Option(
        False,
        "--visibility",
        help="add the trigger's visibility on the test images: PSNR (dB), SSIM and L-inf "
        "(a fraction of 255), means over seeds; - for files that do not record it",
    ),
    curves: bool = typer.Option(
        False,
        "--curves",
        help="one row per trade-off curve (a defense at several strengths): points, strengths, "
        "best CA at ASR <= --asr-threshold and the area under the Pareto front "
        "(docs/curves.md)",
    ),
    asr_threshold: float = typer.Option(
        0.05, "--asr-threshold", help="--curves: the ASR a point must reach for best CA"
    ),
    tolerance: str = typer.Option(None, "--ca-tolerance", help=CA_TOLERANCE_HELP),
    per_seed: bool = typer.Option(
        False,
        "--per-seed",
        help="one line per result file (seed) instead of one per row: the row's rank, the "
        "file, its CA drop, whether its model trained, and its own numbers",
    ),
) -> None:
    """Print the leaderboard: rows attack x defense, CA and ASR before and after (one
    classifier), DER, seeds, each a mean with its 95 % interval (--columns shows any other
    recorded metric). Rows rank within an attack and setting among the usable models (CA drop
    within --ca-tolerance, every seed trained); the best is in bold. Results whose settings
    differ are rows apart, with the differing settings as columns and a warning. A zoo folder
    (benchbd zoo --detect) gives one row per model detector instead: its AUROC on the test
    models with a 95 % score interval, F1, TPR and FPR at the validation threshold, target
    accuracy and seconds per model, best test AUROC first."""
    if is_zoo_folder(folder):
        named = {"--group-by": group_by, "--filter": filter, "--columns": columns, "--sort": sort,
                 "--visibility": visibility, "--curves": curves, "--per-seed": per_seed,
                 "--ca-tolerance": tolerance}  # fmt: skip
        refuse_options("table", [name for name, value in named.items() if value])
        return zoo_table(folder, format)
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    limit = ca_tolerance(tolerance)
    if curves:
        if group_by or columns or sort or visibility or per_seed or tolerance is not None:
            raise ValueError("--curves takes none of --group-by, --columns, --sort, "
                             "--visibility, --per-seed, --ca-tolerance: its columns are fixed "
                             "(docs/curves.md)")  # fmt: skip
        return curve_table(folder, filter, format, asr_threshold)
    keys = parse_columns(columns)
    sort = sort or default_sort(keys)
    check_sort(sort, keys)
    results, skipped = read_results(folder, filter)
    board = tabulate(results, group_by=group_by, sort=sort, columns=keys, ca_tolerance=limit)
    warn(skipped + board.warnings)
    if format != "rich":
        text = (render_per_seed(board, results, format, visibility, keys) if per_seed else
                render(board.rows, format, board.group_by, visibility, keys,
                       caption(board.sort, board.tolerance)))  # fmt: skip
        typer.echo(text, nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    title = f"benchbd leaderboard: {folder} ({len(results)} runs)"
    view = Table(title=title + (", one line per seed" if per_seed else ""),
                 caption=None if per_seed else caption(board.sort, board.tolerance))  # fmt: skip
    n_left = len(board.group_by) + 2
    heads = (per_seed_headers(board.group_by, visibility, keys) if per_seed else
             headers(board.group_by, visibility, keys))  # fmt: skip
    for i, header in enumerate(heads):
        view.add_column(header, justify="left" if i < n_left else "right")
    if per_seed:
        for line in per_seed_texts(per_seed_records(board, results, visibility, keys)):
            view.add_row(*line)
    for row in [] if per_seed else board.rows:
        style = "bold green" if row.best else (None if row.eligible else "dim")
        view.add_row(*row_texts(row, visibility, keys), style=style)
    Console().print(view)


def curve_table(folder: Path, filters: list[str], format: str, threshold: float) -> None:
    """`--curves`: a row per (attack, defense) curve, its summaries, best area in bold."""
    trade_off.check_threshold(threshold)
    results, skipped = read_results(folder, filters)
    frame = trade_off.curve_frame(trade_off.curves(results), threshold)
    warn(skipped)
    if format != "rich":
        typer.echo(trade_off.render(frame, format, threshold), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    view = Table(title=f"benchbd trade-off curves: {folder} ({len(results)} runs)")
    heads = trade_off.headers(frame, threshold)
    for i, header in enumerate(heads):  # points, front and the two summaries are numbers
        view.add_column(header, justify="right" if i >= len(heads) - 4 else "left")
    for line, best in zip(trade_off.texts(frame), frame["best"], strict=True):
        view.add_row(*line, style="bold green" if best else None)
    Console().print(view)
