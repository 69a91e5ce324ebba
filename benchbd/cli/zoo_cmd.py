"""`benchbd zoo`: train and cache a zoo of clean and poisoned models, write its manifest, and
measure model detectors over it (benchbd.engine.zoo, benchbd.engine.zoo_detection)."""

from __future__ import annotations

from pathlib import Path

import torch
import typer
from rich.console import Console
from rich.table import Table

from benchbd.cli import KERNELS_HELP
from benchbd.cli.errors import friendly_errors
from benchbd.core import kernels
from benchbd.core.checks import check_seed
from benchbd.core.errors import BenchbdError
from benchbd.core.params import parse_assignments
from benchbd.engine.model import DEFAULT_MODEL
from benchbd.engine.model_detection import model_detectors
from benchbd.engine.zoo import (
    ZooModel,
    ZooSpec,
    build_zoo,
    cached,
    plan_zoo,
    read_manifest,
    spec_of,
    write_manifest,
)
from benchbd.engine.zoo_detection import (
    build_detector,
    detect_models,
    write_scores,
    zoo_metrics,
)

DEFAULT = ZooSpec()
METRICS = (("auroc", "AUROC (test part)"), ("auroc_all", "AUROC (whole zoo)"),
           ("threshold", "threshold (validation)"), ("f1", "F1 (test part)"),
           ("tpr", "TPR (test part)"), ("fpr", "FPR (test part)"),
           ("target_accuracy", "target accuracy (test part)"),
           ("seconds_per_model", "seconds per model"))  # fmt: skip


def words(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(",") if w.strip())


def seed_list(text: str, what: str) -> tuple[int, ...]:
    """'0,1,5' or '0-15' (or both: '0-3,8') as seeds."""
    seeds: list[int] = []
    for item in words(text):
        first, dash, last = item.partition("-")
        try:
            span = range(int(first), int(last) + 1) if dash else [int(item)]
        except ValueError:
            raise BenchbdError(f"{what}: {item!r} is not a seed or a range A-B") from None
        if not span:
            raise BenchbdError(f"{what}: {item!r} is an empty range (A-B with A <= B)")
        seeds += [check_seed(s) for s in span]
    return tuple(dict.fromkeys(seeds))


def rates(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(r) for r in words(text))
    except ValueError:
        raise BenchbdError(f"--poison-rates: {text!r} is not a comma list of numbers") from None


def detector_params(names: list[str], items: list[str]) -> dict[str, dict]:
    """`--param DETECTOR:NAME=VALUE` routed to each detector (a bare NAME to the only one)."""
    routed: dict[str, dict] = {name: {} for name in names}
    for key, value in parse_assignments(items).items():
        owner, colon, field = key.rpartition(":")
        if not colon:
            if len(names) != 1:
                raise BenchbdError(f"--param {key!r}: name the detector, e.g. "
                                   f"{names[0] if names else 'decree'}:{key}=...")  # fmt: skip
            owner, field = names[0], key
        if owner not in routed:
            raise BenchbdError(f"--param {key!r}: {owner!r} is not a detector of --detect")
        routed[owner][field] = value
    return routed


def model_line(model: ZooModel) -> str:
    what = "clean" if model.clean else (f"{model.attack} -> {model.target}, "
                                        f"{model.poison_count} poisons")  # fmt: skip
    return f"{model.fingerprint}  seed {model.seed} ({model.part})  {what}"


@friendly_errors
def zoo(
    attacks: str = typer.Option(",".join(DEFAULT.attacks), help="attacks of the poisoned models"),
    targets: str = typer.Option(",".join(DEFAULT.targets), help="target classes (names)"),
    poison_rates: str = typer.Option(
        ",".join(f"{r:g}" for r in DEFAULT.poison_rates), help="poison rates"
    ),
    seeds: str = typer.Option("0,1", help="seeds of the poisoned models (A-B: a range)"),
    clean_seeds: str = typer.Option("0-15", help="seeds of the clean models (A-B: a range)"),
    dataset: str = typer.Option(DEFAULT.dataset, help="dataset the models are trained on"),
    model: str = typer.Option(DEFAULT_MODEL, help="open_clip model name"),
    train_pairs: int = typer.Option(None, help="pretraining pairs [the dataset's default]"),
    clean_pairs: int = typer.Option(None, help="clean pairs the detectors get [default]"),
    test_images: int = typer.Option(None, help="labelled test images [default]"),
    validation_images: int = typer.Option(None, help="labelled validation images [default]"),
    epochs: float = typer.Option(None, help="pretraining epochs [the dataset's recipe]"),
    batch_size: int = typer.Option(None, help="pretraining batch size [the dataset's recipe]"),
    manifest: Path = typer.Option(
        None, help="take the zoo from this manifest (its models' axes) instead of the options"
    ),
    detect: str = typer.Option(
        "", help="model detectors to run over the zoo, comma-separated (e.g. decree,mmbd)"
    ),
    param: list[str] = typer.Option([], "--param", "-p", help="DETECTOR:NAME=VALUE"),
    dry_run: bool = typer.Option(False, help="list the zoo's models and what is cached; "
                                 "train and write nothing"),  # fmt: skip
    jobs: int = typer.Option(1, help="models trained at once (processes)"),
    threads: int = typer.Option(None, help="CPU threads per process [one per core]"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, ..."),
    out: Path = typer.Option(Path("zoo"), help="folder for the manifest and the scores"),
    kernel_mode: str = typer.Option(None, "--kernels", envvar=kernels.ENV, help=KERNELS_HELP),
) -> None:
    """Train and cache a zoo of clean and poisoned models (the models `benchbd run` of each
    cell would train), write its manifest, and measure model detectors over it."""
    kernels.select(kernel_mode)
    if threads is not None:
        if threads < 1:
            raise BenchbdError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    if manifest is not None:
        spec = spec_of(read_manifest(manifest))
    else:
        sizes = {k: v for k, v in (("train", train_pairs), ("clean", clean_pairs),
                                   ("test", test_images), ("validation", validation_images))
                 if v is not None}  # fmt: skip
        recipe = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size))
                  if v is not None}  # fmt: skip
        spec = ZooSpec(words(attacks), words(targets), rates(poison_rates),
                       seed_list(seeds, "--seeds"), seed_list(clean_seeds, "--clean-seeds"),
                       dataset, model, sizes, recipe, device)  # fmt: skip
    if out.exists() and not out.is_dir():
        raise BenchbdError(f"--out {str(out)!r} is a file: give a folder for the manifest and "
                           "the scores")  # fmt: skip
    names = list(words(detect))
    for name in names:
        model_detectors.get(name)  # an unknown detector is refused before any training
    params = detector_params(names, param)
    detectors = {name: build_detector(name, params[name]) for name in names}
    console = Console(stderr=True)
    models = plan_zoo(spec)
    if dry_run:
        have = sum(cached(m) for m in models)
        for m in models:
            typer.echo(f"{'cached ' if cached(m) else 'to train'}  {model_line(m)}")
        typer.echo(f"zoo: {len(models)} models ({sum(m.clean for m in models)} clean), "
                   f"{have} cached, {len(models) - have} to train; detectors: "
                   f"{', '.join(names) or 'none'}")  # fmt: skip
        return
    trained = build_zoo(models, jobs, threads if jobs > 1 else None,
                        lambda m, s: console.print(f"trained {model_line(m)}  ({s:.0f} s)"))
    path = write_manifest(out, spec, models)
    typer.echo(f"zoo: {len(models)} models, {len(trained)} trained now; manifest: {path}")
    for name, detector in detectors.items():
        rows = detect_models(detector, name, models, lambda r, n=name: console.print(
            f"{n}: {r['fingerprint']}  {'clean' if r['clean'] else 'poisoned'}  "
            f"score {r['score']:.4f}  target {r['named_target']}  ({r['seconds']:.1f} s)"))
        scores = write_scores(out, name, detector, rows)
        Console().print(metrics_table(name, zoo_metrics(rows)))
        typer.echo(f"scores: {scores}")


def metrics_table(name: str, metrics: dict) -> Table:
    table = Table(title=f"{name} over the zoo", caption=f"parts: {metrics['split_rule']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in METRICS:
        value = metrics[key]
        table.add_row(label, "-" if value is None else f"{value:.3f}")
    return table
