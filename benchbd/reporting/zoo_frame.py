"""A zoo folder's model detectors as a frame: one row per detector, its numbers on the zoo.

`benchbd zoo --detect NAME --out DIR` writes `manifest.json` (kind "benchbd-zoo": the models
the zoo trained) and one `detect-NAME.json` per model detector (kind "benchbd-zoo-detection":
every model's score and named target, and the metrics the split rule gives). This module reads
those files alone, never the engine that wrote them, so that `benchbd table`, `plot` and
`report` show a zoo as they show a folder of run results.

The numbers a row shows are the detection file's own metrics, so the table says what the file
says; the one number the file does not hold, the uncertainty of the test AUROC, is the 95 %
score interval over the test models that zoo claims are decided with
(benchbd.reporting.zoo_claims.zoo_interval), so that a table and a claim never disagree. A file
whose recorded AUROC is not its own test models' is warned about: it was edited or written by
another version.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchbd.core.errors import BenchbdError
from benchbd.reporting.zoo_claims import zoo_interval

if TYPE_CHECKING:
    import pandas as pd

ZOO_KIND = "benchbd-zoo"
DETECTION_KIND = "benchbd-zoo-detection"
MANIFEST = "manifest.json"
PATTERN = "detect-*.json"
METRICS = ("auroc", "auroc_all", "threshold", "f1", "tpr", "fpr", "target_accuracy",
           "target_accuracy_all", "seconds_per_model")  # fmt: skip
PARTS = ("validation", "test")
AGREEMENT = 1e-9  # how far a recorded AUROC may be from its test models' before a warning


@dataclass(frozen=True)
class Detection:
    """One detector's file: its name, the metrics it records and every model's record."""

    name: str
    path: Path
    metrics: Mapping[str, Any]
    models: list[Mapping[str, Any]]
    split_rule: str = ""

    def part(self, name: str) -> list[Mapping[str, Any]]:
        """The models of one part of the split: "validation" or "test"."""
        return [m for m in self.models if m.get("part") == name]


@dataclass(frozen=True)
class Zoo:
    """A zoo folder's detection files, by detector name, and what the reader should be told."""

    folder: Path
    detections: list[Detection]
    warnings: list[str] = field(default_factory=list)

    @property
    def models(self) -> int:
        """The zoo's models: the largest count any detector scored."""
        return max((len(d.models) for d in self.detections), default=0)

    @property
    def split_rule(self) -> str:
        """The rule that parts the models into validation and test (one per zoo)."""
        return next((d.split_rule for d in self.detections if d.split_rule), "")


def is_zoo_folder(folder: Path) -> bool:
    """Whether `folder` holds a zoo: a detection file, or a manifest of kind "benchbd-zoo"."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    if any(folder.glob(PATTERN)):
        return True
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, Mapping) and data.get("kind") == ZOO_KIND


def read_zoo(folder: Path) -> Zoo:
    """Every detection file in a zoo folder, checked; one line of error for the first that is
    damaged, saying how to write it again."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchbdError(f"zoo folder {str(folder)!r} does not exist or is not a folder")
    paths = sorted(folder.glob(PATTERN))
    if not paths:
        raise BenchbdError(f"zoo folder {str(folder)!r} holds no detect-*.json file; run "
                           f"benchbd zoo --detect NAME --out {folder} to measure a model "
                           "detector on it")  # fmt: skip
    detections = [read_detection_file(path) for path in paths]
    warnings = [line for d in detections for line in _disagreements(d)]
    return Zoo(folder, detections, warnings)


def _damaged(path: Path, why: str) -> BenchbdError:
    name = path.name.removeprefix("detect-").removesuffix(".json") or "NAME"
    return BenchbdError(f"{str(path)!r} is not a zoo detection file ({why}); write it again "
                        f"with benchbd zoo --detect {name} --out {path.parent}")  # fmt: skip


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_detection_file(path: Path) -> Detection:
    """One `detect-NAME.json`, with its kind, metrics and model records checked."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise _damaged(path, f"cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise _damaged(path, f"not JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, Mapping) or data.get("kind") != DETECTION_KIND:
        kind = data.get("kind") if isinstance(data, Mapping) else None
        raise _damaged(path, f"its kind is {kind!r}, not {DETECTION_KIND!r}")
    detector, metrics, models = data.get("detector"), data.get("metrics"), data.get("models")
    if not isinstance(detector, Mapping) or not isinstance(detector.get("name"), str):
        raise _damaged(path, "it names no detector")
    if not isinstance(metrics, Mapping):
        raise _damaged(path, "it records no metrics")
    for key in METRICS:
        value = metrics.get(key)
        if value is not None and not _number(value):
            raise _damaged(path, f"metrics.{key} is {value!r}, not a number")
    if not isinstance(models, list) or not models:
        raise _damaged(path, "it records no models")
    for index, model in enumerate(models):
        if not isinstance(model, Mapping):
            raise _damaged(path, f"models[{index}] is not a record")
        score = model.get("score")
        if not _number(score) or not math.isfinite(score):
            raise _damaged(path, f"models[{index}].score is {score!r}, not a finite number")
        if model.get("part") not in PARTS or not isinstance(model.get("clean"), bool):
            raise _damaged(path, f"models[{index}] has no part (validation or test) or no "
                           "clean flag")  # fmt: skip
    rule = metrics.get("split_rule")
    return Detection(detector["name"], Path(path), metrics, list(models),
                     rule if isinstance(rule, str) else "")  # fmt: skip


def _disagreements(detection: Detection) -> list[str]:
    """A warning when the recorded test AUROC is not the test models' own."""
    recorded = detection.metrics.get("auroc")
    measured = zoo_interval(detection.part("test"), "auroc")[0].mean
    if recorded is None or measured is None or abs(recorded - measured) <= AGREEMENT:
        return []
    return [f"{detection.path.name}: its recorded test AUROC {recorded:.4f} is not its test "
            f"models' ({measured:.4f}); write it again with benchbd zoo --detect "
            f"{detection.name}"]  # fmt: skip


def _metric(metrics: Mapping[str, Any], key: str) -> float:
    value = metrics.get(key)
    return float(value) if _number(value) else math.nan


def _bound(value: float | None) -> float:
    return math.nan if value is None else float(value)


def zoo_frame(zoo: Zoo) -> pd.DataFrame:
    """One row per detector, best test AUROC first (ties and missing AUROCs by name): the test
    part's poisoned and clean counts, the AUROC there with its score interval, and the
    file's other metrics. Columns are numbers (NaN where a file records none)."""
    import pandas as pd

    rows = []
    for detection in zoo.detections:
        test = detection.part("test")
        auroc, poisoned, clean = zoo_interval(test, "auroc")
        accuracy = zoo_interval(test, "target_accuracy")[0]
        metrics = detection.metrics
        rows.append({
            "detector": detection.name,
            "test_poisoned": poisoned,
            "test_clean": clean,
            "models": len(detection.models),
            "auroc": _metric(metrics, "auroc"),
            "auroc_low": _bound(auroc.low),
            "auroc_high": _bound(auroc.high),
            "auroc_all": _metric(metrics, "auroc_all"),
            "threshold": _metric(metrics, "threshold"),
            "f1": _metric(metrics, "f1"),
            "tpr": _metric(metrics, "tpr"),
            "fpr": _metric(metrics, "fpr"),
            "target_accuracy": _metric(metrics, "target_accuracy"),
            "target_accuracy_low": _bound(accuracy.low),
            "target_accuracy_high": _bound(accuracy.high),
            "target_accuracy_all": _metric(metrics, "target_accuracy_all"),
            "seconds_per_model": _metric(metrics, "seconds_per_model"),
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["_missing"] = frame["auroc"].isna()
    frame = frame.sort_values(["_missing", "auroc", "detector"], ascending=[True, False, True],
                              kind="mergesort")  # fmt: skip
    return frame.drop(columns="_missing").reset_index(drop=True)
