"""The input stage: a detector scores each evaluation image, and flagged images are rejected.

The poisoned model is kept as it is. A detector (`InputDetector`) fits once on the defender's
clean split and the model, then scores images (higher = more likely triggered). Three sets are
scored, in fixed batches:

- the clean VALIDATION images, only to fix the rejection threshold: the smallest of their
  scores that leaves at most `REJECT_FPR` (5 %) of them above it. The test split never sets it.
- the clean test images (the run's evaluation split) and the triggered non-target test images,
  triggered exactly as `evaluate` triggers them (same generator seeds, each part of a
  several-trigger attack with its own).

Detection numbers (`benchbd.engine.detection.detection_metrics`, triggered images the
positives, clean test images the negatives): AUROC, AP, TPR at 1 % and 5 % FPR; at the
validation threshold, the share of triggered images rejected (`poisons_removed`) and of clean
test images rejected (`clean_lost`); the threshold, the validation FPR it gives, and the
seconds of scoring per image (fitting apart, `fit_s`).

The "after" metrics are the zero-shot classifier's with rejection: a rejected clean image
counts as not correctly classified (CA falls by the clean images lost), a rejected triggered
image counts as not attacked (ASR falls by the triggered images caught) and as not robustly
classified either (RA counts only images kept and given their true class). So DER weighs a
detector's false alarms against what it catches, as it weighs a purifier's CA loss.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchbd.core.errors import BenchbdError
from benchbd.engine.data.images import is_streamed
from benchbd.engine.data.pairs import PairSet, ZeroShotTask
from benchbd.engine.detection import detection_metrics
from benchbd.engine.evaluate import (
    Metrics,
    TriggerFn,
    TriggerPart,
    combined,
    measured_triggers,
    predict,
    trigger_test_images,
    zero_shot_weights,
)
from benchbd.engine.model import ClipBundle
from benchbd.engine.plugins import DefenseContext, InputDetector

REJECT_FPR = 0.05  # the share of clean validation images the rejection threshold flags, at most
SCORE_BATCH = 256  # images per `score` call


@dataclass(frozen=True)
class InputDetection:
    """What the input stage measured: `metrics.detection`, the "after" metrics with rejection,
    and what the result file keeps besides (`extra.input_detection`: threshold, ROC curve)."""

    detection: dict[str, Any]
    after: Metrics
    report: dict[str, Any]


def rejection_threshold(clean_scores: np.ndarray, fpr: float = REJECT_FPR) -> float:
    """The threshold an image is rejected above (score > threshold): the smallest value that
    flags at most `fpr` of `clean_scores` (the k-th largest of them, k = floor(fpr * n) + 1),
    so ties never push the clean share flagged past `fpr`."""
    values = np.sort(np.asarray(clean_scores, dtype=np.float64))
    if not len(values):
        raise BenchbdError("no clean validation image to fix the rejection threshold on")
    allowed = int(np.floor(fpr * len(values) + 1e-9))
    return float(values[len(values) - 1 - allowed])


def share(hits: torch.Tensor) -> float:
    """The share of True in `hits`, computed as `evaluate` computes its rates (a float32
    mean), so that a detector that rejects nothing leaves CA, ASR and RA exactly as they were."""
    return hits.float().mean().item()


def score_images(detector: InputDetector, clip: ClipBundle, images: torch.Tensor,
                 context: DefenseContext, name: str) -> tuple[np.ndarray, float]:  # fmt: skip
    """The detector's scores of `images` in batches of SCORE_BATCH, checked (one finite float
    per image), and the seconds scoring took."""
    scores, start = [], time.perf_counter()
    with torch.no_grad():
        for first in range(0, len(images), SCORE_BATCH):
            batch = images[first : first + SCORE_BATCH]
            found = torch.as_tensor(detector.score(clip, batch, context)).detach().cpu()
            if found.shape != (len(batch),):
                raise BenchbdError(f"input detector {name!r} gave {tuple(found.shape)} scores "
                                   f"for {len(batch)} images: one per image")  # fmt: skip
            scores.append(found.double())
    seconds = time.perf_counter() - start
    values = torch.cat(scores).numpy() if scores else np.zeros(0)
    if not np.isfinite(values).all():
        raise BenchbdError(f"input detector {name!r} gave a score that is not a finite number")
    return values, seconds


def detect_inputs(
    detector: InputDetector,
    clip: ClipBundle,
    context: DefenseContext,
    validation: PairSet | None,
    test: PairSet,
    task: ZeroShotTask,
    target: int,
    trigger: TriggerFn | None,
    seed: int,
    parts: Mapping[str, TriggerPart] | None = None,
    name: str = "input",
) -> InputDetection:
    """Fit `detector`, fix its threshold on `validation`'s clean images, and measure it on
    `test` (clean, and triggered as `evaluate` triggers with `seed`)."""
    if validation is None or not len(validation):
        raise BenchbdError("an input detector's rejection threshold is fixed on the validation "
                           "split, and this data has none: set validation images aside with "
                           "--validation-images N")  # fmt: skip
    if is_streamed(test) or is_streamed(validation):
        raise BenchbdError("the input stage scores evaluation sets held in memory; this one "
                           "is read from disk")
    clip.model.eval()
    start = time.perf_counter()
    detector.fit(clip, context)
    fit_s = time.perf_counter() - start
    clip.model.eval()  # scored as evaluation classifies, whatever `fit` left
    validation_scores = score_images(detector, clip, validation.images, context, name)[0]
    threshold = rejection_threshold(validation_scores)
    clean_scores, seconds = score_images(detector, clip, test.images, context, name)
    weights = zero_shot_weights(clip, task)
    clean_kept = torch.from_numpy(clean_scores <= threshold)
    ca = share((predict(clip, test.images, weights) == test.labels) & clean_kept)
    rates, triggered_scores = {}, []
    for part, part_trigger, part_target, part_seed in measured_triggers(trigger, target, seed,
                                                                        parts):  # fmt: skip
        eligible = test.labels != part_target
        images = trigger_test_images(test.images, test.labels, part_target, part_trigger,
                                     part_seed)  # fmt: skip
        scores, spent = score_images(detector, clip, images, context, name)
        seconds += spent
        triggered_scores.append(scores)
        kept = torch.from_numpy(scores <= threshold)
        hits, labels = predict(clip, images, weights), test.labels[eligible]
        rates[part] = (share((hits == part_target) & kept), share((hits == labels) & kept),
                       int(eligible.sum()))  # fmt: skip
    after = combined(ca, rates, len(test), "zero-shot")
    positives = np.concatenate(triggered_scores) if triggered_scores else np.zeros(0)
    everything = np.concatenate([clean_scores, positives])
    triggered_rows = range(len(clean_scores), len(everything))
    flagged = np.nonzero(everything > threshold)[0].tolist()
    detection, curve = detection_metrics(everything, triggered_rows, flagged)
    detection.update(
        threshold=threshold,
        validation_fpr=float(np.mean(validation_scores > threshold)),
        seconds_per_image=seconds / max(len(everything), 1),
        fit_s=round(fit_s, 3),
    )
    report: dict[str, Any] = {"threshold": threshold, "reject_fpr": REJECT_FPR,
                              "validation_images": len(validation)}  # fmt: skip
    if curve is not None:
        report["roc"] = curve
    return InputDetection(detection, after, report)
