"""The input stage: a detector scores each evaluation image, and flagged images are rejected.

The poisoned model is kept as it is. A detector (`InputDetector`) fits once on the defender's
clean split and the model, then scores images (higher = more likely triggered). Three sets are
scored, in fixed batches:

- the clean VALIDATION images, only to fix the rejection threshold: the smallest of their
  scores that leaves at most `REJECT_FPR` (5 %) of them above it. The test split never sets it.
- the clean test images (the run's evaluation split) and the triggered non-target test images,
  triggered exactly as `evaluate` triggers them (same generator seeds, each part of a
  several-trigger attack with its own). A test set read from disk is scored batch by batch as
  `evaluate_streamed` reads it (the same batches, each triggered with its batch's stream), so
  memory stays bounded by the batch and a detector that rejects nothing leaves its numbers.

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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchbd.core.errors import BenchbdError
from benchbd.engine.data.images import batches_of, is_streamed, stream
from benchbd.engine.data.pairs import PairSet, ZeroShotTask
from benchbd.engine.detection import detection_metrics
from benchbd.engine.evaluate import (
    STREAM_BATCH,
    Measured,
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


def in_batches(pairs: PairSet) -> Iterator[tuple[int | None, torch.Tensor, torch.Tensor]]:
    """`pairs`' images and labels: all at once (batch number None) when held in memory, else
    read from disk in `evaluate_streamed`'s batches of STREAM_BATCH, numbered as it numbers them."""
    if not is_streamed(pairs):
        yield None, pairs.images, pairs.labels
        return
    batches = batches_of(len(pairs), STREAM_BATCH)
    for number, (images, positions) in enumerate(stream(pairs.images, batches)):
        yield number, images, pairs.labels[positions]


@dataclass
class Tally:
    """What the test batches add up to: scores, whether each image was classified right (clean)
    or as the target (triggered, per part), and the seconds scoring took."""

    clean_scores: list[np.ndarray]
    clean_correct: list[torch.Tensor]
    triggered: dict[str | None, list[tuple[np.ndarray, torch.Tensor, torch.Tensor]]]
    seconds: float = 0.0


def tally_test(detector: InputDetector, clip: ClipBundle, context: DefenseContext, test: PairSet,
               weights: torch.Tensor, measured: Measured, name: str) -> Tally:  # fmt: skip
    """Score and classify `test`'s clean images and each part's triggered non-target images,
    batch by batch (`in_batches`)."""
    tally = Tally([], [], {part: [] for part, *_ in measured})
    for number, images, labels in in_batches(test):
        scores, spent = score_images(detector, clip, images, context, name)
        tally.seconds += spent
        tally.clean_scores.append(scores)
        tally.clean_correct.append(predict(clip, images, weights) == labels)
        for part, part_trigger, part_target, part_seed in measured:
            eligible = labels != part_target
            if not eligible.any():
                continue
            triggered = trigger_test_images(images, labels, part_target, part_trigger,
                                            part_seed, number)  # fmt: skip
            scores, spent = score_images(detector, clip, triggered, context, name)
            tally.seconds += spent
            hits = predict(clip, triggered, weights)
            tally.triggered[part].append((scores, hits == part_target, hits == labels[eligible]))
    return tally


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
    clip.model.eval()
    start = time.perf_counter()
    detector.fit(clip, context)
    fit_s = time.perf_counter() - start
    clip.model.eval()  # scored as evaluation classifies, whatever `fit` left
    validation_scores = np.concatenate([
        score_images(detector, clip, images, context, name)[0]
        for _, images, _ in in_batches(validation)
    ])  # fmt: skip
    threshold = rejection_threshold(validation_scores)
    measured = measured_triggers(trigger, target, seed, parts)
    tally = tally_test(detector, clip, context, test, zero_shot_weights(clip, task), measured,
                       name)  # fmt: skip
    clean_scores = np.concatenate(tally.clean_scores)
    correct = torch.cat(tally.clean_correct)
    ca = share(correct & torch.from_numpy(clean_scores <= threshold))
    rates, triggered_scores = {}, []
    for part, batches in tally.triggered.items():
        if not batches:
            raise BenchbdError("no test image outside the target class: ASR is undefined")
        scores = np.concatenate([b[0] for b in batches])
        kept = torch.from_numpy(scores <= threshold)
        attacked, right = (torch.cat([b[k] for b in batches]) for k in (1, 2))
        triggered_scores.append(scores)
        rates[part] = (share(attacked & kept), share(right & kept), len(scores))
    after = combined(ca, rates, len(test), "zero-shot")
    positives = np.concatenate(triggered_scores) if triggered_scores else np.zeros(0)
    everything = np.concatenate([clean_scores, positives])
    triggered_rows = range(len(clean_scores), len(everything))
    flagged = np.nonzero(everything > threshold)[0].tolist()
    detection, curve = detection_metrics(everything, triggered_rows, flagged)
    detection.update(
        threshold=threshold,
        validation_fpr=float(np.mean(validation_scores > threshold)),
        seconds_per_image=tally.seconds / max(len(everything), 1),
        fit_s=round(fit_s, 3),
    )
    report: dict[str, Any] = {"threshold": threshold, "reject_fpr": REJECT_FPR,
                              "validation_images": len(validation)}  # fmt: skip
    if curve is not None:
        report["roc"] = curve
    return InputDetection(detection, after, report)
