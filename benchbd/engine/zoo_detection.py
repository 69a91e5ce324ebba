"""Model detectors run over a zoo, and what they are measured by.

Each zoo model is loaded from the cache (trained first if it is missing, as `benchbd run`
would) and given to the detector with its own dataset's clean split and zero-shot task, and a
seed of its own (`substream(seed, "model-detect")`). Its score, named target and seconds are
kept per model. Over the zoo:

- AUROC of the scores, poisoned models positive, on the test part (and over the whole zoo);
- F1 on the test part at the threshold that maximises F1 on the validation part (the zoo's
  split rule: `engine.zoo.SPLIT_RULE`); a model is flagged when its score is at least the
  threshold; among equal validation F1s the highest threshold is kept (fewer false alarms);
- target accuracy: among poisoned models, the share whose named target is the attack's (a
  detector that names none scores 0 on it; None for a detector that never names one);
- seconds per model (mean detection time, loading aside).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from benchbd.core.cache import atomic_write_text
from benchbd.core.params import build
from benchbd.core.results import versions
from benchbd.core.seeds import substream
from benchbd.engine.model_detection import (
    DetectionContext,
    ModelDetector,
    check_target,
    model_detectors,
)
from benchbd.engine.planning import load_experiment_data
from benchbd.engine.poisoned_model import load_poisoned
from benchbd.engine.zoo import SPLIT_RULE, ZooModel


def build_detector(name: str, params: Mapping[str, Any]) -> ModelDetector:
    """Model detector `name` with its typed parameters (checked like every plugin's)."""
    cls = model_detectors.get(name)
    return cls(build(cls.Params, dict(params), owner=f"model detector {name!r}"))


def detect_models(
    detector: ModelDetector,
    name: str,
    models: Sequence[ZooModel],
    done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Each model's record with the detector's verdict: score, named target, seconds."""
    rows = []
    data_of: dict[str, Any] = {}
    for model in models:
        config = model.config
        key = json.dumps([config.dataset, str(config.sizes), config.model])
        data = data_of.setdefault(key, load_experiment_data(config))
        context = DetectionContext(data.clean, data.task, substream(config.seed, "model-detect"))
        detector.check(context)
        clip, _ = load_poisoned(config, data)
        start = time.perf_counter()
        verdict = check_target(detector.detect(clip, context), len(data.task.classnames), name)
        seconds = time.perf_counter() - start
        named = None if verdict.target is None else data.task.classnames[verdict.target]
        row = {**model.record(), "score": verdict.score, "named_target_index": verdict.target,
               "named_target": named, "seconds": round(seconds, 3),
               "details": dict(verdict.details)}  # fmt: skip
        rows.append(row)
        if done:
            done(row)
    return rows


def best_threshold(scores: np.ndarray, poisoned: np.ndarray) -> float | None:
    """The score threshold (flag when score >= it) of the highest F1 on these models, the
    highest such threshold among ties; None without both kinds of model."""
    if poisoned.all() or not poisoned.any():
        return None
    best, chosen = -1.0, None
    for threshold in sorted(set(scores.tolist()), reverse=True):
        value = f1(scores >= threshold, poisoned)
        if value > best:
            best, chosen = value, threshold
    return chosen


def f1(flagged: np.ndarray, poisoned: np.ndarray) -> float:
    """F1 of flagging `flagged` as backdoored (0 when nothing is flagged correctly)."""
    hits = int((flagged & poisoned).sum())
    if not hits:
        return 0.0
    return 2 * hits / (int(flagged.sum()) + int(poisoned.sum()))


def auroc(scores: np.ndarray, poisoned: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if poisoned.all() or not poisoned.any():
        return None
    return float(roc_auc_score(poisoned, scores))


def target_accuracy(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """Among poisoned models, the share whose named target is the attack's."""
    poisoned = [r for r in rows if not r["clean"]]
    if not poisoned or all(r["named_target_index"] is None for r in rows):
        return None
    return sum(r["named_target_index"] == r["target_index"] for r in poisoned) / len(poisoned)


def zoo_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """AUROC, F1 at the validation threshold, target accuracy and seconds per model."""
    def arrays(part: str | None):
        chosen = [r for r in rows if part is None or r["part"] == part]
        return (np.array([r["score"] for r in chosen], dtype=np.float64),
                np.array([not r["clean"] for r in chosen], dtype=bool), chosen)  # fmt: skip

    val_scores, val_truth, _ = arrays("validation")
    test_scores, test_truth, test_rows = arrays("test")
    all_scores, all_truth, _ = arrays(None)
    threshold = best_threshold(val_scores, val_truth)
    flagged = test_scores >= threshold if threshold is not None else None
    return {
        "split_rule": SPLIT_RULE,
        "models": {"validation": len(val_scores), "test": len(test_scores)},
        "auroc": auroc(test_scores, test_truth),
        "auroc_all": auroc(all_scores, all_truth),
        "threshold": threshold,
        "validation_f1": None if threshold is None else f1(val_scores >= threshold, val_truth),
        "f1": None if flagged is None else f1(flagged, test_truth),
        "tpr": None if flagged is None or not test_truth.any()
        else float(flagged[test_truth].mean()),
        "fpr": None if flagged is None or test_truth.all()
        else float(flagged[~test_truth].mean()),
        "target_accuracy": target_accuracy(test_rows),
        "target_accuracy_all": target_accuracy(rows),
        "seconds_per_model": round(float(np.mean([r["seconds"] for r in rows])), 3)
        if rows else None,
    }  # fmt: skip


def scores_filename(name: str) -> str:
    return f"detect-{name.replace(':', '_')}.json"


def write_scores(out: Path, name: str, detector: ModelDetector,
                 rows: Sequence[Mapping[str, Any]]) -> Path:  # fmt: skip
    """The detector's scores file beside the manifest: its record, metrics, and every model."""
    info = model_detectors.info(name)
    try:
        found = version(info.package)
    except (PackageNotFoundError, ValueError):  # a detector registered in-process
        found = None
    record = {"name": info.name, "package": info.package, "version": found,
              "params": detector.params.to_dict()}  # fmt: skip
    content = {"kind": "benchbd-zoo-detection", "detector": record,
               "metrics": zoo_metrics(rows), "models": list(rows), "versions": versions()}
    path = Path(out) / scores_filename(name)
    atomic_write_text(path, json.dumps(content, indent=1, default=str) + "\n")
    return path
