"""`benchbd show`: a PNG grid of what an attack's trigger does to test images."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from benchbd.cli.errors import friendly_errors
from benchbd.cli.run_cmd import route_params
from benchbd.data.sources import DataSizes
from benchbd.errors import BenchbdError
from benchbd.model import DEFAULT_MODEL
from benchbd.pipeline import RunConfig, trigger_examples
from benchbd.visualize import trigger_grid


@friendly_errors
def show(
    attack: str = typer.Option("badnet", help="attack plugin (see `benchbd list`)"),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="attack parameter NAME=VALUE or ATTACK:NAME=VALUE"
    ),
    target: str = typer.Option(RunConfig.target, help="target class name or index"),
    seed: int = typer.Option(0, help="run seed (the trigger `benchbd run --seed` evaluates)"),
    images: int = typer.Option(8, min=1, max=32, help="how many test images"),
    dataset: str = typer.Option("synthetic", help="data source"),
    model: str = typer.Option(DEFAULT_MODEL, help="open_clip model name (sets the image size)"),
    test_images: int = typer.Option(
        None, help=f"test images, as given to `benchbd run` [{DataSizes.test}; real: all]"
    ),
    out: Path = typer.Option(Path("trigger.png"), help="PNG file to write"),
) -> None:
    """Write clean images, triggered images and their amplified difference as a PNG grid."""
    # a bare name is the attack's, even one the defense `none` might one day declare
    forced = [p if any(c in p.split("=")[0] for c in ".:") else f"attack.{p}" for p in param]
    for item in forced:
        plugin, colon, _ = item.split("=")[0].partition(":")
        if colon and plugin.strip() != attack:
            raise BenchbdError(f"--param {item!r}: {plugin.strip()!r} is not the attack "
                               f"{attack!r} shown")  # fmt: skip
    values, ignored = route_params(attack, "none", forced)
    if ignored:
        raise BenchbdError(f"benchbd show takes attack parameters only, got {', '.join(ignored)}")
    # The run's own config and attack: the same seed streams, image size and test split, so
    # that the picture is the trigger `benchbd run` measures with the same options.
    real = dataset.partition(":")[0] != "synthetic"
    sizes = DataSizes(train=0, test=0) if real else DataSizes()
    if test_images is not None:
        sizes = replace(sizes, test=test_images)
    config = RunConfig(attack=attack, attack_params=values, dataset=dataset, model=model,
                       target=target, seed=seed, sizes=sizes)  # fmt: skip
    attack_built, clean, triggered = trigger_examples(config, images)
    params = attack_built.params
    shown = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.to_dict().items()
    )
    trigger_grid(clean, triggered, f"{attack} ({shown})" if shown else attack, out)
    typer.echo(f"wrote {out}")
