"""The result file: one JSON per run, typed, complete enough to reproduce every number in it.

Metrics are fractions in [0, 1]. Files are written atomically, so a run killed midway leaves
either no file or a whole one, and never damages the results already in the folder.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchbd.cache import atomic_write_text

SCHEMA_VERSION = 1

# Whether a larger value is better, per metric: tables sort and highlight from this.
HIGHER_IS_BETTER = {"ca": True, "ca_top5": True, "asr": False, "ra": True, "der": True}


@dataclass(frozen=True)
class PluginRecord:
    name: str
    package: str
    params: dict[str, Any]


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
    metrics: dict[str, dict[str, Any]]  # "before" and "after": Metrics.to_dict()
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
        return (
            f"{self.attack.name}__{self.defense.name}__seed{self.seed}__{self.fingerprint[:8]}.json"
        )

    def write(self, folder: Path) -> Path:
        path = Path(folder) / self.filename
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path


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
    """A result file as a dict; ValueError when it is not a benchbd result."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc})") from exc
    required = {"attack", "defense", "metrics", "seed", "schema_version"}
    if not isinstance(data, dict) or not required <= data.keys():
        raise ValueError(f"{path}: not a benchbd result file")
    if data["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema version {data['schema_version']} is not supported")
    return data
