"""`benchbd show`: a PNG grid of what an attack's trigger does to test images."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from benchbd.cli.errors import friendly_errors
from benchbd.cli.run_cmd import route_params
from benchbd.data.sources import DataSizes, load_data
from benchbd.errors import BenchbdError
from benchbd.pipeline import RunConfig, attack_params
from benchbd.plugins import AttackSetup, attacks
from benchbd.visualize import trigger_grid


@friendly_errors
def show(
    attack: str = typer.Option("badnet", help="attack plugin (see `benchbd list`)"),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="attack parameter NAME=VALUE or ATTACK:NAME=VALUE"
    ),
    target: str = typer.Option(RunConfig.target, help="target class name or index"),
    seed: int = typer.Option(0, help="attack seed"),
    images: int = typer.Option(8, min=1, max=32, help="how many test images"),
    dataset: str = typer.Option("synthetic", help="data source"),
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
    config = RunConfig(attack=attack, attack_params=values, target=target, seed=seed)
    params = attack_params(config)
    data = load_data(dataset, DataSizes(), image_size=32)
    target_index = data.task.class_index(target)
    plugin = attacks.get(attack)(params, AttackSetup(target_index, data.task, 0, seed))
    clean = data.test.images[data.test.labels != target_index][:images]
    triggered = plugin.apply_trigger(clean, torch.Generator().manual_seed(seed))
    shown = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.to_dict().items()
    )
    trigger_grid(clean, triggered, f"{attack} ({shown})" if shown else attack, out)
    typer.echo(f"wrote {out}")
