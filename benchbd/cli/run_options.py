"""The options of a run, defined once for `benchbd run` and `benchbd sweep`.

Both commands take every recipe and resource option under the same name (a grid file's [run]
table takes them too: run_config.RUN_OPTIONS, one HELP entry each), so moving from one run to
a sweep of it is adding the sweep's own options, never renaming. `run` shows each default;
`sweep` leaves each unset unless given, so the grid's setting (or the run's default) holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import typer

from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.evaluate import EVALUATIONS
from benchbd.engine.run_config import FINETUNE_RECIPE, RUN_OPTIONS
from benchbd.engine.train import TrainConfig

FROM_PRETRAINED = "--from-pretrained: "


def _recipe(name: str, what: str) -> str:
    """The help of a pretraining recipe option, with both its defaults."""
    default, finetune = getattr(TrainConfig, name), getattr(FINETUNE_RECIPE, name)
    return f"pretraining {what} [{default:g}; {FROM_PRETRAINED}{finetune:g}]"


HELP = {
    "target": "target class name or index [heart; digits: zero]",
    "poison_rate": "fraction of training pairs to poison",
    "poison_count": "number of pairs to poison (overrides rate)",
    "dataset": "synthetic, digits, csv:PATH, hf:NAME[:CONFIG] or imagefolder:PATH",
    "eval_dataset": "labelled test set for a real dataset, e.g. imagefolder:PATH",
    "clean_dataset": "clean pairs for defenses (default: set aside from --dataset)",
    "model": "open_clip model name",
    "pretrained": "pretrained weights: an open_clip tag (e.g. openai) or a checkpoint file",
    "from_pretrained": "poison by finetuning the --pretrained weights on the poisoned pairs",
    "train_pairs": f"pretraining pairs (synthetic: {DataSizes.train}; real: all rows)",
    "clean_pairs": f"clean pairs for defenses [{DataSizes.clean}]",
    "test_images": f"labelled test images (synthetic: {DataSizes.test}; real: all)",
    "validation_images": f"labelled validation images, disjoint from test "
    f"[{DataSizes.validation}; real: at most a tenth of the labelled rows; 0: none]",
    "split": "split to measure on: test (report) or validation (choose defaults)",
    "eval": f"measurements beside zero-shot CA / ASR, comma-separated: "
    f"{', '.join(EVALUATIONS)} (see docs/evaluation.md)",
    "epochs": _recipe("epochs", "epochs"),
    "batch_size": _recipe("batch_size", "batch size"),
    "lr": _recipe("lr", "peak learning rate"),
    "inmodal_weight": "weight of the in-modal terms (image-image, text-text on augmented "
    "views) added to the CLIP loss in pretraining [0: the CLIP loss alone]",
    "device": "auto, cpu, cuda, cuda:1, ...",
    "threads": "CPU threads [one per core]; recorded, as exact reruns need the same count",
}

def run_option(name: str, default: Any = None, sweep: bool = False) -> Any:
    """The typer option for run option `name` (`--name-with-dashes`); for `sweep`, unset
    unless given, and said to override the grid's."""
    flag = "--" + name.replace("_", "-")
    decls = [f"{flag}/--no-{flag[2:]}"] if name == "from_pretrained" else [flag]
    help = f"{HELP[name]}; overrides the grid's" if sweep else HELP[name]
    return typer.Option(default, *decls, help=help, show_default=default is not None)


# A run option whose command parameter has another name (`eval` is a Python builtin's name).
PARAMETER = {"eval": "evaluations"}


def given_options(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Every run option (RUN_OPTIONS) from a command's parameters (its `locals()`), by name:
    one list for `run` and `sweep`, so an option added to RUN_OPTIONS reaches both or fails
    loudly (KeyError) in the command that lacks it."""
    return {name: parameters[PARAMETER.get(name, name)] for name in RUN_OPTIONS}
