"""The site's trigger gallery: what each attack of a results folder does to test images.

The gallery picks one result per distinct trigger (its lowest seed) and lays out what the
caller's `TriggerExamples` makes of it: the clean test images and the same images triggered,
drawn as `benchbd show` draws them (`trigger_gallery.trigger_grid`). Making the images takes the
engine (the data, the attack plugin), which reporting never imports: `benchbd report` hands its
function in (benchbd.cli.report_cmd), so the picture is the trigger that run measured, from
the configuration its file records. Nothing is trained. A trigger that cannot be drawn (a
plugin that is not installed, a dataset that is not on this machine) is named with the reason
instead of failing the whole site.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchbd.core.errors import BenchbdError
from benchbd.core.registry import PluginError
from benchbd.core.results import is_baseline
from benchbd.reporting.trigger_gallery import trigger_grid, trigger_title

if TYPE_CHECKING:
    import torch

# (a result, how many test images) -> (clean images, the same images triggered), each
# (N, 3, H, W) in [0, 1]; raises one of CANNOT_DRAW when the trigger cannot be drawn here.
TriggerExamples = Callable[[Mapping[str, Any], int], "tuple[torch.Tensor, torch.Tensor]"]
FOLDER = "triggers"  # inside the site
CANNOT_DRAW = (BenchbdError, PluginError, ValueError, OSError)


@dataclass(frozen=True)
class Trigger:
    """One gallery entry: the picture's path inside the site, or why there is none."""

    attack: str
    caption: str
    file: str | None
    reason: str = ""


def attacks(results: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One result per distinct trigger (attack, its parameters, dataset, model and target),
    the one with the lowest seed; baseline attacks (no trigger) are left out."""
    chosen: dict[str, Mapping[str, Any]] = {}
    for result in results:
        if is_baseline(result["attack"]):
            continue
        key = json.dumps([result["attack"]["name"], result["attack"]["params"],
                          result["dataset"]["name"], result["model"],
                          result["target"]["name"]], sort_keys=True)  # fmt: skip
        if key not in chosen or result["seed"] < chosen[key]["seed"]:
            chosen[key] = result
    return sorted(chosen.values(), key=lambda r: (r["attack"]["name"], json.dumps(
        r["attack"]["params"], sort_keys=True)))  # fmt: skip


def title(result: Mapping[str, Any]) -> str:
    """The attack and its parameters, as `benchbd show` titles its picture."""
    return trigger_title(result["attack"]["name"], dict(sorted(result["attack"]["params"].items())))


def caption(result: Mapping[str, Any]) -> str:
    """Where the picture's images come from: what a reader needs to draw it again."""
    return (f"{result['attack']['name']} on {result['dataset']['name']}, target "
            f"{result['target']['name']}, seed {result['seed']}")  # fmt: skip


def draw(results: Sequence[Mapping[str, Any]], site: Path, images: int,
         examples: TriggerExamples) -> list[Trigger]:  # fmt: skip
    """Write one trigger grid PNG per distinct trigger under `site`/triggers, of the images
    `examples` makes of its result."""
    drawn: list[Trigger] = []
    names: set[str] = set()
    for result in attacks(results):
        name = _file_name(result["attack"]["name"], names)
        text = caption(result)
        try:
            clean, triggered = examples(result, images)
            trigger_grid(clean, triggered, title(result), site / FOLDER / name)
        except CANNOT_DRAW as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            drawn.append(Trigger(result["attack"]["name"], text, None, reason))
            continue
        drawn.append(Trigger(result["attack"]["name"], text, f"{FOLDER}/{name}"))
    return drawn


def _file_name(attack: str, taken: set[str]) -> str:
    """A safe, unique file name: a plugin's name is any string a package chose."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", attack).strip("._") or "attack"
    name, n = f"{stem}.png", 2
    while name in taken:
        name, n = f"{stem}-{n}.png", n + 1
    taken.add(name)
    return name
