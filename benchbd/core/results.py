"""The result file: one JSON per run, typed, complete enough to reproduce every number in it.

Metrics are fractions in [0, 1]. Files are written atomically, so a run killed midway leaves
either no file or a whole one, and never damages the results already in the folder.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchbd.core.cache import atomic_write_text

SCHEMA_VERSION = 1

# Whether a larger value is better, per metric: tables sort and highlight from this. The
# detection numbers are a screening defense's (`metrics.detection`, benchbd.engine.detection).
HIGHER_IS_BETTER = {
    "ca": True, "ca_top5": True, "asr": False, "ra": True, "der": True,
    # opt-in evaluations (benchbd.engine.evaluate.EVALUATIONS)
    "probe_ca": True, "probe_asr": False, "probe_ra": True,
    "i2t_recall_at_1": True, "i2t_recall_at_5": True,
    "t2i_recall_at_1": True, "t2i_recall_at_5": True, "retrieval_asr": False,
    # detection
    "auroc": True, "ap": True, "tpr_at_1fpr": True, "tpr_at_5fpr": True,
    "poisons_removed": True, "clean_lost": False,
    "seconds_per_image": False,  # an input detector's cost (benchbd.engine.input_stage)
}  # fmt: skip
DETECTION = ("auroc", "ap", "tpr_at_1fpr", "tpr_at_5fpr", "poisons_removed", "clean_lost")
# The metrics an attack with several triggers records once per trigger (`asr_<part>`,
# `ra_<part>`, benchbd.engine.plugins.TriggerPart), each with the direction of its kind.
PER_TRIGGER = ("asr", "ra")


def higher_is_better(metric: str) -> bool | None:
    """Whether a larger value of `metric` is better: HIGHER_IS_BETTER's word, a per-trigger
    metric (asr_badnet) taking its kind's; None for a metric that declares no direction."""
    if metric in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[metric]
    kind, _, part = metric.partition("_")
    return HIGHER_IS_BETTER[kind] if part and kind in PER_TRIGGER else None


# Settings a result file records only when they differ from their default, so that files
# written before the setting existed keep every field: a reader takes an absent one as this
# value (`benchbd table --group-by pretrain.inmodal_weight` shows 0, not "-"). The one list:
# the training recipe (benchbd.engine.train.TrainConfig.to_dict) leaves its "pretrain.*" out.
OMITTED_AT_DEFAULT: dict[str, Any] = {"pretrain.inmodal_weight": 0.0, "pretrain.schedule": "cosine"}


@dataclass(frozen=True)
class PluginRecord:
    """Which plugin ran, with what parameters, and from which release of which package: a
    plugin's code can change between releases while its name and parameters stay the same.
    `baseline` is what the plugin declares (`Attack.baseline`, `Defense.baseline`), so that a
    table read from files alone can tell a reference run from one under study. A run makes
    it with `benchbd.engine.plugin_records.plugin_record_of`, which asks the registries."""

    name: str
    package: str
    params: dict[str, Any]
    version: str | None = None  # of `package`; None when it is not an installed distribution
    baseline: bool | None = None  # None: not known (see `is_baseline`)


def is_baseline(plugin: Mapping[str, Any]) -> bool:
    """Whether a recorded plugin (a result file's `attack` or `defense` object) is a baseline.

    Files written before plugins declared it have no `baseline` field (or None); for those the
    answer is what it always was: the plugin named `none`, the only baseline then. This is the
    one place that knows that name."""
    flag = plugin.get("baseline")
    if flag is None:
        return plugin.get("name") == "none"
    return bool(flag)


@dataclass(frozen=True)
class RunResult:
    """Everything about one run: what was done, what came out, how long it took."""

    attack: PluginRecord
    defense: PluginRecord
    dataset: dict[str, Any]
    model: str
    seed: int
    target: dict[str, Any]
    poison: dict[str, Any]
    pretrain: dict[str, Any]
    # "before" and "after": Metrics.to_dict(); a screen's "detection" (benchbd.engine.detection)
    metrics: dict[str, dict[str, Any]]
    der: float | None
    fingerprint: str
    poisoned_model_fingerprint: str
    pretrain_cached: bool
    timings: dict[str, float]
    versions: dict[str, str]
    created: str
    schema_version: int = SCHEMA_VERSION
    # Device and CPU threads of the defense and of pretraining: float sums depend on how work
    # is split between threads, so an exact rerun needs the same counts (`--threads`).
    runtime: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def filename(self) -> str:
        return result_filename(self.attack.name, self.defense.name, self.seed, self.fingerprint)

    def write(self, folder: Path) -> Path:
        path = Path(folder) / self.filename
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path


def result_filename(attack: str, defense: str, seed: int, fingerprint: str) -> str:
    """A result file's name: readable, and unique per experiment through its fingerprint."""
    return f"{attack}__{defense}__seed{seed}__{fingerprint[:8]}.json"


def execution(runtime: dict[str, Any]) -> dict[str, Any]:
    """What besides the experiment moves the numbers: CPU threads and kernel levels of the
    defense and of pretraining (older files, without kernels, read as 'unrecorded')."""
    level = (runtime.get("kernels") or {}).get("level", "unrecorded")
    return {
        "threads": runtime.get("threads"),
        "pretrain_threads": runtime.get("pretrain_threads"),
        "kernels": level,
        "pretrain_kernels": runtime.get("pretrain_kernels", "unrecorded"),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("benchbd", "torch", "open_clip_torch", "numpy", "datasets"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def read_result(path: Path) -> dict[str, Any]:
    """A result file as a dict; ValueError ("<path>: <why>", one line) when it is not a
    benchbd result. The shape checked is what the leaderboard and the plots read, so a stray
    JSON file is skipped by name instead of failing a whole folder's table later on."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: not readable JSON ({_brief(exc)})") from exc
    problem = _shape_problem(data)
    if problem:
        raise ValueError(f"{path}: {problem}")
    return data


REQUIRED = ("attack", "defense", "metrics", "seed", "schema_version")
JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
              type(None): "null"}  # fmt: skip


def _brief(value: Any, limit: int = 40) -> str:
    text = value if isinstance(value, (str, Exception)) else json.dumps(value, default=str)
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _table_problem(values: Any, where: str, names: Iterable[str]) -> str | None:
    """What is wrong with one metrics table: not an object, or a named metric that is neither
    a number nor null."""
    if not isinstance(values, dict):
        return f"{where} must be an object, got {_brief(values)}"
    for name in names:
        value = values.get(name)
        if value is not None and not _is_number(value):
            return f"{where}.{name} must be a number or null, got {_brief(value)}"
    return None


def _shape_problem(data: Any) -> str | None:
    """Why `data` is not a result the leaderboard can read, or None if it is one."""
    if not isinstance(data, dict):
        kind = JSON_KINDS.get(type(data), type(data).__name__)
        return f"not a benchbd result (a JSON {kind}, not an object)"
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        return f"not a benchbd result (no {', '.join(missing)})"
    version = data["schema_version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        return f"schema version {_brief(version)} is not supported"
    for role in ("attack", "defense"):
        plugin = data[role]
        if not isinstance(plugin, dict) or not isinstance(plugin.get("name"), str):
            return f"{role} must be an object with a name, got {_brief(plugin)}"
        if not isinstance(plugin.get("params", {}), dict):
            return f"{role}.params must be an object, got {_brief(plugin['params'])}"
        if plugin.get("baseline") is not None and not isinstance(plugin["baseline"], bool):
            return f"{role}.baseline must be true, false or null, got {_brief(plugin['baseline'])}"
    if type(data["seed"]) is not int:
        return f"seed must be an integer, got {_brief(data['seed'])}"
    metrics = data["metrics"]
    if not isinstance(metrics, dict):
        return f"metrics must be an object, got {_brief(metrics)}"
    for when in ("before", "after"):
        problem = _table_problem(metrics.get(when), f"metrics.{when}", HIGHER_IS_BETTER)
        if problem:
            return problem
    if metrics.get("detection") is not None:
        problem = _table_problem(metrics["detection"], "metrics.detection", DETECTION)
        if problem:
            return problem
    der = data.get("der")
    if der is not None and not _is_number(der):
        return f"der must be a number or null, got {_brief(der)}"
    created = data.get("created")
    if created is not None and not isinstance(created, str):
        return f"created must be a date string, got {_brief(created)}"
    return None
