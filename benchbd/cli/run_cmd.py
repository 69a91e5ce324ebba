"""`benchbd run`: one attack against one defense, end to end, with a live progress display."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from benchbd.cli import KERNELS_HELP, busy
from benchbd.cli.errors import friendly_errors, warn_clashes
from benchbd.cli.progress import PlainObserver
from benchbd.cli.run_options import given_options, run_option
from benchbd.core import kernels
from benchbd.core.errors import BenchbdError
from benchbd.core.params import parse_assignments
from benchbd.core.registry import canonical_package
from benchbd.core.results import RunResult
from benchbd.core.suggest import did_you_mean
from benchbd.engine import distributed
from benchbd.engine.evaluate import EVALUATIONS, evaluations_in
from benchbd.engine.model import DEFAULT_MODEL, resolve_device
from benchbd.engine.observer import Observer
from benchbd.engine.pipeline import run as run_pipeline
from benchbd.engine.plugins import attacks, defenses
from benchbd.engine.run_config import RunConfig, apply_resources, run_arguments
from benchbd.engine.train import StepReport


def spellings(registry, name: str) -> set[str]:
    """Every way a --param prefix may name the plugin `name` stands for: its own name, and
    `PACKAGE:NAME` with the package as recorded or as installers spell it."""
    info = registry.info(name)
    return {name, info.name, info.qualified, f"{canonical_package(info.package)}:{info.name}"}


def route_params(attack: str, defense: str, items: list[str]) -> tuple[dict, dict]:
    """Send each --param to the plugin that declares it; 'blended:x' (the plugin's own name,
    as results and the README write it; 'PACKAGE:NAME:x' for a plugin named with its package)
    or 'attack.x' / 'defense.x' force the owner."""
    attack_fields = set(attacks.get(attack).Params.__dataclass_fields__)
    defense_fields = set(defenses.get(defense).Params.__dataclass_fields__)
    names = (spellings(attacks, attack), spellings(defenses, defense))
    routed: tuple[dict, dict] = ({}, {})
    for key, value in parse_assignments(items).items():
        plugin, colon, name = key.rpartition(":")
        plugin = plugin.strip()
        if colon:
            owners = [i for i in (0, 1) if plugin in names[i]]
            if not owners:
                raise BenchbdError(
                    f"--param {key!r}: {plugin!r} is neither the attack {attack!r} nor the "
                    f"defense {defense!r} of this run"
                )
            if len(owners) == 1:  # a name both plugins share is routed by its fields below
                routed[owners[0]][name.strip()] = value
                continue
            key = name.strip()
        owner, _, name = key.rpartition(".")
        if owner in ("attack", "defense"):
            routed[owner == "defense"][name] = value
        elif owner:
            raise BenchbdError(f"--param {key!r}: prefix must be 'attack.' or 'defense.'")
        elif name in attack_fields and name in defense_fields:
            raise BenchbdError(
                f"--param {name!r} is a parameter of both {attack!r} and {defense!r}; "
                f"write attack.{name} or defense.{name}"
            )
        elif name in attack_fields or name in defense_fields:
            routed[name in defense_fields][name] = value
        else:
            known = attack_fields | defense_fields
            raise BenchbdError(
                f"neither attack {attack!r} nor defense {defense!r} has a parameter "
                f"{name!r}{did_you_mean(name, known) if known else ''}"
            )
    return routed


class RichObserver(Observer):
    """Progress bars with loss and pairs/s for training stages; one line per note."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description:<9}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TextColumn("{task.fields[rate]:.0f} pairs/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> RichObserver:
        return self  # the display starts with the first progress step, so an error found
        # before any training is its own single line, with no empty display above it

    def __exit__(self, *exc) -> None:
        if self.tasks:  # stopping a display that never started would print an empty line
            self.progress.stop()

    def stage(self, name: str) -> None:
        self.current = name

    def step(self, report: StepReport) -> None:
        if not self.tasks:
            self.progress.start()
        if report.stage not in self.tasks:
            self.tasks[report.stage] = self.progress.add_task(
                report.stage, total=report.total, loss=0.0, rate=0.0
            )
        self.progress.update(
            self.tasks[report.stage], completed=report.step, loss=report.loss,
            rate=report.pairs_per_s,
        )  # fmt: skip

    def note(self, message: str) -> None:
        self.progress.console.print(f"[cyan]{message}[/cyan]")


def summary(result: RunResult) -> Table:
    title = (f"{result.attack.name} vs {result.defense.name} (seed {result.seed}, "
             f"target {result.target['name']!r}, {result.poison['count']} poisons)")  # fmt: skip
    table = Table(title=title)
    for column in ("metric", "before defense", "after defense"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    for key, label in (("ca", "CA"), ("asr", "ASR"), ("ra", "RA")):
        values = [result.metrics[w][key] for w in ("before", "after")]
        table.add_row(label, *["-" if v is None else f"{v:.3f}" for v in values])
    table.add_row("DER", "", "-" if result.der is None else f"{result.der:.3f}")
    for key in (k for name in evaluations_in(result.metrics) for k in EVALUATIONS[name]):
        values = [result.metrics[w][key] for w in ("before", "after")]
        table.add_row(key, *["-" if v is None else f"{v:.3f}" for v in values])
    detection = result.metrics.get("detection")
    if detection is not None:  # a screen: how well it found the poisoned pairs it dropped
        for key, label in (("auroc", "detection AUROC"), ("tpr_at_1fpr", "TPR at 1% FPR"),
                           ("poisons_removed", "poisons removed"),
                           ("clean_lost", "clean pairs lost")):  # fmt: skip
            value = detection[key]
            table.add_row(label, "", "-" if value is None else f"{value:.3f}")
    return table


class NoteWhenWorkStarts(Observer):
    """Passes everything on to `observer`, and checks for a busy machine when training is
    about to start (the pretrain stage, after the data, the attack and the output folder were
    checked): input the run refuses gets its error line alone."""

    def __init__(self, observer: Observer, siblings: bool, threads: int) -> None:
        self.observer, self.siblings, self.threads = observer, siblings, threads
        self.checked = False

    def stage(self, name: str) -> None:
        if name == "pretrain" and not self.checked:
            self.checked = True
            message = busy.check(self.threads, "run", siblings=self.siblings)
            if message:
                self.observer.note(message)
        self.observer.stage(name)

    def step(self, report) -> None:
        self.observer.step(report)

    def note(self, message: str) -> None:
        self.observer.note(message)


@friendly_errors
def run(
    attack: str = typer.Option(RunConfig.attack, help="attack plugin (see `benchbd list`)"),
    defense: str = typer.Option(RunConfig.defense, help="defense plugin (see `benchbd list`)"),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="plugin parameter NAME=VALUE or PLUGIN:NAME=VALUE"
    ),
    target: str = run_option("target"),
    poison_rate: float = run_option("poison_rate", RunConfig.poison_rate),
    poison_count: int = run_option("poison_count"),
    seed: int = typer.Option(0, help="seed for poisons, initialisation, batches and triggers"),
    dataset: str = run_option("dataset", RunConfig.dataset),
    eval_dataset: str = run_option("eval_dataset"),
    clean_dataset: str = run_option("clean_dataset"),
    model: str = run_option("model", DEFAULT_MODEL),
    pretrained: str = run_option("pretrained"),
    from_pretrained: bool = run_option("from_pretrained", False),
    train_pairs: int = run_option("train_pairs"),
    clean_pairs: int = run_option("clean_pairs"),
    test_images: int = run_option("test_images"),
    validation_images: int = run_option("validation_images"),
    split: str = run_option("split", RunConfig.split),
    evaluations: str = run_option("eval", ""),
    epochs: float = run_option("epochs"),
    batch_size: int = run_option("batch_size"),
    lr: float = run_option("lr"),
    inmodal_weight: float = run_option("inmodal_weight"),
    device: str = run_option("device", RunConfig.device),
    threads: int = run_option("threads"),
    out: Path = typer.Option(Path("runs"), help="folder for the result file"),
    kernel_mode: str = typer.Option(None, "--kernels", envvar=kernels.ENV, help=KERNELS_HELP),
) -> None:
    """Poison, pretrain, evaluate, defend, evaluate, and record one result file.

    Under `torchrun --nproc-per-node N -m benchbd run ...` every rank trains on its slice of
    each batch; rank 0 alone draws progress and writes the result file."""
    kernels.select(kernel_mode)  # applied by main() before torch; refused here if it differs
    if os.environ.get("RANK", "0") == "0":  # torchrun's other ranks stay silent
        warn_clashes(attack, defense)
    attack_params, defense_params = route_params(attack, defense, param)
    world = distributed.init_from_env()
    # Only what was given: RunConfig fills the rest (every row of a real dataset, the
    # finetuning recipe for --from-pretrained), as for a sweep's cells.
    options = {**given_options(locals()), "device": distributed.device_for(device)}
    config = apply_resources(RunConfig(attack=attack, defense=defense, seed=seed,
                                       attack_params=attack_params, defense_params=defense_params,
                                       **run_arguments(options)))  # fmt: skip
    if not world.is_main:  # the other ranks train their slices silently and write nothing
        run_pipeline(config, observer=Observer(), out=None)
        return
    console = Console(stderr=True)
    live = console.is_terminal  # a log file gets plain lines at an interval, not a bar
    with RichObserver(console) if live else PlainObserver(console) as observer:
        if resolve_device(config.device).type == "cpu":  # other ranks are this run's own
            observer = NoteWhenWorkStarts(observer, world.size == 1, config.threads)
        result = run_pipeline(config, observer=observer, out=out)
    Console().print(summary(result))
    typer.echo(f"result: {out / result.filename}  ({result.timings['total_s']:.0f} s)")
