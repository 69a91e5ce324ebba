"""`benchbd sweep`: run a grid of cells with one overall progress display."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from benchbd.cli import KERNELS_HELP, busy
from benchbd.cli.errors import Terminated, fail, friendly_errors, warn_clashes
from benchbd.cli.progress import PlainSweepObserver, auroc_text
from benchbd.cli.run_options import given_options, run_option
from benchbd.core import kernels
from benchbd.core.errors import BenchbdError
from benchbd.engine import dry_run
from benchbd.engine.executors import EXECUTORS
from benchbd.engine.grid import Grid, expand_names, load_grid, parse_seeds
from benchbd.engine.model import resolve_device
from benchbd.engine.param_lists import merged, sweep_params
from benchbd.engine.run_config import RunConfig
from benchbd.engine.sweep import CellOutcome, SweepObserver, existing_fingerprints, sweep


class RichSweepObserver(SweepObserver):
    """One bar for the grid: cells done, running, failed, and time left; a line per cell."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]sweep"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} cells"),
            TextColumn("{task.fields[running]} running"),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
        )
        self.running = 0
        self.failed = 0

    def __enter__(self) -> RichSweepObserver:
        return self  # the display starts in start(), once the whole grid has been validated

    def __exit__(self, *exc) -> None:
        if self.progress.live.is_started:  # stopping an unstarted display prints a blank line
            self.progress.stop()

    def start(self, total: int, skipped: int) -> None:
        self.progress.start()
        if skipped:
            self.console.print(f"[cyan]{skipped} of {total} cells already have results: skipped")
        self.task = self.progress.add_task("sweep", total=total - skipped, running=0, failed=0)

    def cell_started(self, name: str) -> None:
        self.running += 1
        self.progress.update(self.task, running=self.running)

    def cell_finished(self, outcome: CellOutcome) -> None:
        self.running -= 1
        if outcome.status == "failed":
            self.failed += 1
            self.console.print(f"[red]failed[/red] {outcome.name}: {outcome.error}")
        else:
            m = outcome.metrics
            self.console.print(f"done   {outcome.name}: CA {m['ca']:.3f}  ASR "
                               f"{'-' if m['asr'] is None else format(m['asr'], '.3f')}"
                               f"{auroc_text(m)}  ({outcome.seconds:.0f} s)")  # fmt: skip
        self.progress.update(self.task, advance=1, running=self.running, failed=self.failed)

    def cell_waiting(self, name: str, holder: str) -> None:
        self.console.print(f"[dim]waiting[/dim] {name}: held by {escape(holder)}")

    def cell_elsewhere(self, name: str, how: str) -> None:
        self.console.print(f"[cyan]skipped[/cyan] {name}: {how}")
        self.progress.update(self.task, advance=1)


def print_dry_run(plan: Grid, out: Path, jobs: int, timing_folders: list[Path]) -> None:
    """--dry-run: the plan and its estimate, from the sweep's own planning; nothing is written."""
    if jobs < 1:
        raise BenchbdError(f"--jobs must be at least 1, got {jobs}")
    done = existing_fingerprints(out) if out.is_dir() else set()
    timings = dry_run.Timings.from_folders(f for f in timing_folders if f.is_dir())
    for line in dry_run.report(dry_run.dry_run(plan.cells(), done, jobs, timings), out):
        typer.echo(line)


def note_if_busy(plan: Grid, jobs: int) -> None:
    """One note when other processes leave too few cores for this sweep's CPU threads."""
    try:
        if resolve_device(str(plan.run.get("device", RunConfig.device))).type != "cpu":
            return
    except BenchbdError:
        return  # each cell reports it, as without this note
    threads = dry_run.cell_threads(jobs, plan.run.get("threads"))
    message = busy.check(threads * jobs, "sweep")
    if message:
        logging.getLogger("benchbd").info(message)  # printed as `benchbd: note: ...`


PARAM_HELP = (
    "plugin parameter PLUGIN.NAME=VALUE (or PLUGIN:NAME=VALUE) for an attack or defense of the "
    "sweep; a number or boolean may be a comma list, one cell per value (e.g. "
    "cleanclip.lr=1e-5,3e-5,1e-4: a trade-off curve); repeatable, over the grid's own"
)


def with_params(plan: Grid, items: list[str]) -> Grid:
    """The grid with the command line's --param over its per-plugin tables, checked whole."""
    attack_params, defense_params = sweep_params(items, plan.attacks, plan.defenses)
    plan = replace(plan, attack_params=merged(plan.attack_params, attack_params),
                   defense_params=merged(plan.defense_params, defense_params))  # fmt: skip
    plan.cells()  # every value of every list checked before any cell runs
    return plan


@friendly_errors
def sweep_cmd(
    attacks: str = typer.Option("all", help="attack names, comma-separated, or 'all'"),
    defenses: str = typer.Option("all", help="defense names, comma-separated, or 'all'"),
    seeds: str = typer.Option(
        None,
        help="seeds, comma-separated [default: 0, or the grid's]; with --grid, overrides "
        "the grid's (--seeds 0: a one-seed tier of a committed grid)",
    ),
    grid: Path = typer.Option(
        None, help="TOML grid file (replaces --attacks and --defenses, and --seeds unless given)"
    ),
    param: list[str] = typer.Option([], "--param", "-p", help=PARAM_HELP),
    jobs: int = typer.Option(1, "--jobs", "-j", help="cells run in parallel (CPU threads split)"),
    executor: str = typer.Option("local", help="|".join(EXECUTORS)),
    out: Path = typer.Option(Path("runs"), help="folder for the result files"),
    slurm_partition: str = typer.Option(None, help="Slurm partition (--executor slurm)"),
    slurm_time: int = typer.Option(120, help="Slurm time limit per cell, minutes"),
    slurm_gpus: int = typer.Option(1, help="GPUs per Slurm job"),
    slurm_cpus: int = typer.Option(8, help="CPUs per Slurm job"),
    kernel_mode: str = typer.Option(None, "--kernels", envvar=kernels.ENV, help=KERNELS_HELP),
    target: str = run_option("target", sweep=True),
    poison_rate: float = run_option("poison_rate", sweep=True),
    poison_count: int = run_option("poison_count", sweep=True),
    dataset: str = run_option("dataset", sweep=True),
    eval_dataset: str = run_option("eval_dataset", sweep=True),
    clean_dataset: str = run_option("clean_dataset", sweep=True),
    model: str = run_option("model", sweep=True),
    pretrained: str = run_option("pretrained", sweep=True),
    from_pretrained: bool = run_option("from_pretrained", sweep=True),
    train_pairs: int = run_option("train_pairs", sweep=True),
    clean_pairs: int = run_option("clean_pairs", sweep=True),
    test_images: int = run_option("test_images", sweep=True),
    validation_images: int = run_option("validation_images", sweep=True),
    split: str = run_option("split", sweep=True),
    evaluations: str = run_option("eval", sweep=True),
    epochs: float = run_option("epochs", sweep=True),
    batch_size: int = run_option("batch_size", sweep=True),
    lr: float = run_option("lr", sweep=True),
    inmodal_weight: float = run_option("inmodal_weight", sweep=True),
    device: str = run_option("device", sweep=True),
    threads: int = run_option("threads", sweep=True),
    dry: bool = typer.Option(
        False, "--dry-run", help="print the cells, cached models and estimated time; run nothing"
    ),
    timings: list[Path] = typer.Option(
        None,
        help="--dry-run: folders whose result files' timings estimate the time [--out, results]",
    ),
) -> None:
    """Run every (attack, defense, seed) cell; finished cells are skipped, so rerunning resumes.

    Exit code: 0 when every cell succeeded, else the number of failed cells (at most 100)."""
    kernels.select(kernel_mode)  # the workers inherit it through $BENCHBD_KERNELS
    warn_clashes()
    if grid is not None:
        plan = load_grid(grid)
        if seeds is not None:
            plan = replace(plan, seeds=parse_seeds(seeds))
    else:
        plan = Grid(expand_names(attacks, "attack"), expand_names(defenses, "defense"),
                    parse_seeds("0" if seeds is None else seeds))  # fmt: skip
    if param:
        plan = with_params(plan, param)
    options = given_options(locals())
    if any(value is not None for value in options.values()):
        plan = plan.with_run(options)
        plan.cells()  # the options over the grid's checked before any cell runs
    if executor not in EXECUTORS:
        raise BenchbdError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    slurm = {"timeout_min": slurm_time}
    if executor == "slurm":
        slurm |= {"slurm_partition": slurm_partition, "gpus_per_node": slurm_gpus,
                  "cpus_per_task": slurm_cpus}  # fmt: skip
        slurm = {k: v for k, v in slurm.items() if v is not None}
    if dry:
        print_dry_run(plan, out, jobs, timings or [out, Path("results")])
        return
    if executor == "local":
        note_if_busy(plan, jobs)
    console = Console(stderr=True)
    start = time.perf_counter()
    try:
        live = console.is_terminal  # a log file gets plain lines at an interval, not a bar
        with RichSweepObserver(console) if live else PlainSweepObserver(console) as observer:
            summary = sweep(plan, out, jobs=jobs, executor=executor, observer=observer,
                            slurm=slurm)  # fmt: skip
    except (KeyboardInterrupt, Terminated) as exc:
        code = 128 + exc.signum if isinstance(exc, Terminated) else 130
        why = f"stopped by {exc}" if isinstance(exc, Terminated) else "interrupted"
        fail(f"sweep {why}; finished cells are kept and the same command resumes", code=code)
    minutes = (time.perf_counter() - start) / 60
    typer.echo(
        f"sweep: {summary.done} done, {summary.skipped} skipped, {len(summary.failed)} failed "
        f"of {summary.total} cells in {minutes:.1f} min; results in {out}"
    )
    if summary.failed:
        typer.echo(f"failure records: {out / 'failed'}", err=True)
        raise typer.Exit(min(len(summary.failed), 100))
