"""`benchbd show`: a PNG grid of what an attack's trigger does to test images."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from benchbd.cli.errors import friendly_errors
from benchbd.core.errors import BenchbdError
from benchbd.core.params import parse_assignments
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.model import DEFAULT_MODEL
from benchbd.engine.poisoned_model import trigger_examples
from benchbd.engine.run_config import RunConfig, default_sizes
from benchbd.reporting.trigger_gallery import trigger_grid, trigger_title


def attack_params(attack: str, items: list[str]) -> dict[str, str]:
    """The --param values of `show`, which draws an attack alone: every one is the attack's,
    whether written bare (`alpha=0.2`), `attack.alpha=0.2` or `ATTACK:alpha=0.2` with the
    attack's own name. A defense's parameter is refused rather than ignored."""
    values: dict[str, str] = {}
    for key, value in parse_assignments(items).items():
        plugin, colon, name = key.partition(":")
        if colon:
            if plugin.strip() != attack:
                raise BenchbdError(f"--param {f'{key}={value}'!r}: {plugin.strip()!r} is not "
                                   f"the attack {attack!r} shown")  # fmt: skip
            values[name.strip()] = value
            continue
        owner, _, name = key.rpartition(".")
        if owner == "defense":
            raise BenchbdError(f"benchbd show takes attack parameters only, got {name}")
        if owner not in ("", "attack"):
            raise BenchbdError(f"--param {key!r}: prefix must be 'attack.' or 'defense.'")
        values[name] = value
    return values


@friendly_errors
def show(
    attack: str = typer.Option(RunConfig.attack, help="attack plugin (see `benchbd list`)"),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="attack parameter NAME=VALUE or ATTACK:NAME=VALUE"
    ),
    target: str = typer.Option(
        None, help="target class name or index [heart; digits: zero]", show_default=False
    ),
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
    values = attack_params(attack, param)
    # The run's own config and attack: the same seed streams, image size and test split, so
    # that the picture is the trigger `benchbd run` measures with the same options.
    sizes = default_sizes(dataset)
    if test_images is not None:
        sizes = replace(sizes, test=test_images)
    config = RunConfig(attack=attack, attack_params=values, dataset=dataset, model=model,
                       target=target, seed=seed, sizes=sizes)  # fmt: skip
    attack_built, clean, triggered = trigger_examples(config, images)
    trigger_grid(clean, triggered, trigger_title(attack, attack_built.params.to_dict()), out)
    typer.echo(f"wrote {out}")
