"""Zero-shot evaluation and the metrics a backdoor benchmark reports: CA, ASR, RA and DER.

Definitions follow the method notes, including the detail research code often gets wrong:
ASR's denominator is the number of test images whose true class is not the target.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from benchbd.core.errors import BenchbdError
from benchbd.core.results import (
    HIGHER_IS_BETTER,  # noqa: F401  (re-exported: metric directions)
    PER_TRIGGER,
)
from benchbd.core.seeds import substream
from benchbd.core.suggest import did_you_mean
from benchbd.engine import distributed
from benchbd.engine.data.images import batches_of, is_streamed, release_freed_memory, stream
from benchbd.engine.data.pairs import PairSet, ZeroShotTask
from benchbd.engine.model import ClipBundle
from benchbd.engine.plugins import TriggerFn, TriggerPart

STREAM_BATCH = 256  # images per batch when a test set is read from disk

# The measurements a run makes only when asked (`RunConfig.eval`, `benchbd run --eval`), each
# with the flat fields it adds to `metrics.before` and `metrics.after`. Opt-in because each
# costs about as much again as the zero-shot evaluation (benchmarks/extra_evaluations.py),
# and a result file that did not ask for them stays exactly as it was.
EVALUATIONS: dict[str, tuple[str, ...]] = {
    "probe": ("probe_ca", "probe_asr", "probe_ra"),
    "retrieval": ("i2t_recall_at_1", "i2t_recall_at_5", "t2i_recall_at_1", "t2i_recall_at_5",
                  "retrieval_asr"),
}  # fmt: skip


def parse_evaluations(value: str | Sequence[str]) -> tuple[str, ...]:
    """The opt-in evaluations named by `value` ("probe,retrieval", or a list of names), in
    EVALUATIONS order with repeats dropped, so that one choice written two ways is one
    setting; a BenchbdError naming the unknown one otherwise."""
    if isinstance(value, str):
        names = value.split(",")
    elif isinstance(value, (list, tuple)) and all(isinstance(n, str) for n in value):
        names = list(value)
    else:
        raise BenchbdError(f"eval must be a list of evaluation names, got {value!r}")
    names = [n.strip() for n in names if n.strip()]
    for name in names:
        if name not in EVALUATIONS:
            raise BenchbdError(f"unknown evaluation {name!r}{did_you_mean(name, EVALUATIONS)}")
    return tuple(name for name in EVALUATIONS if name in names)


def evaluations_in(metrics: Mapping[str, Mapping]) -> tuple[str, ...]:
    """The opt-in evaluations a result file's `metrics` hold: what its run asked for."""
    before = metrics.get("before") or {}
    return tuple(name for name, fields in EVALUATIONS.items() if fields[0] in before)


def batch_stream(batch: int) -> str:
    """The name of streamed batch `batch`'s trigger stream under the evaluation seed: named,
    not `seed * k + batch`, so batch streams of nearby seeds never coincide."""
    return f"batch-{batch}"


def trigger_test_images(
    images: torch.Tensor,
    labels: torch.Tensor,
    target: int,
    trigger: TriggerFn,
    seed: int,
    batch: int | None = None,
) -> torch.Tensor:
    """The non-target images among `images`, triggered as evaluation triggers them: with a
    generator seeded by the evaluation seed, or for a streamed test set by that seed's named
    substream for the batch (`batch_stream`) rather than by arithmetic on the seed.
    `benchbd show` calls it too, so that it pictures exactly the trigger a run measures."""
    generator_seed = seed if batch is None else substream(seed, batch_stream(batch))
    return trigger(images[labels != target], torch.Generator().manual_seed(generator_seed))


def triggered_examples(
    test: PairSet, target: int, trigger: TriggerFn, seed: int, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` non-target test images, clean and as `evaluate` triggers them.

    A random trigger's draws for one image depend on the images triggered with it (badnet
    draws every patch before any location), so the whole set, or each streamed batch, is
    triggered as evaluation does and only then cut to `count`."""
    if not is_streamed(test):
        clean = test.images[test.labels != target][:count]
        return clean, trigger_test_images(test.images, test.labels, target, trigger, seed)[:count]
    clean, triggered = [], []
    batches = batches_of(len(test), STREAM_BATCH)
    for number, (images, positions) in enumerate(stream(test.images, batches)):
        labels = test.labels[positions]
        if (labels != target).any():
            clean.append(images[labels != target])
            triggered.append(trigger_test_images(images, labels, target, trigger, seed, number))
        if sum(len(c) for c in clean) >= count:
            break
    if not clean:
        raise BenchbdError("no test image outside the target class to trigger")
    return torch.cat(clean)[:count], torch.cat(triggered)[:count]


def part_stream(name: str) -> str:
    """The name of a trigger part's stream under the evaluation seed: each part triggers its
    images with its own generator, so adding a part never changes another's draws."""
    return f"trigger-{name}"


# What one evaluation triggers: (part name, or None for an attack's one trigger; the trigger;
# its target; the seed of its generator).
Measured = list[tuple[str | None, TriggerFn, int, int]]


def measured_triggers(
    trigger: TriggerFn | None, target: int, seed: int, parts: Mapping[str, TriggerPart] | None
) -> Measured:
    """The triggers an evaluation measures: every part of a several-trigger attack, each with
    its named stream; else the one trigger with the evaluation seed itself, as always."""
    if parts:
        for name in parts:
            if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                raise BenchbdError(f"trigger part name {name!r} must be letters, digits and "
                                   f"underscores: it names result fields (asr_<name>)")  # fmt: skip
        return [(name, part.trigger, part.target, substream(seed, part_stream(name)))
                for name, part in parts.items()]  # fmt: skip
    return [] if trigger is None else [(None, trigger, target, seed)]


@dataclass(frozen=True)
class Metrics:
    """One evaluation. Fractions in [0, 1]; asr and ra are None when there is no trigger.

    For an attack with several triggers (`TriggerPart`), `per_trigger` holds each part's ASR
    and RA against its own target (`asr_<part>`, `ra_<part>`), `asr` and `ra` are their means
    (each part weighs the same, whatever its target) and `n_triggered` counts the triggered
    images of every part."""

    ca: float
    asr: float | None
    ra: float | None
    n_test: int
    n_triggered: int
    classifier: str = "zero-shot"
    ca_top5: float | None = None  # reported for streamed (real) test sets with over 5 classes
    # Opt-in measurements of the same model (EVALUATIONS' fields): flat in the result file
    # beside the zero-shot ones, and absent from it when the run did not ask for them.
    opt_in: Mapping[str, float | None] = field(default_factory=dict)
    # Per-trigger fields of a several-trigger attack, flat beside the headline ones; absent
    # from the result file of an attack with one trigger.
    per_trigger: Mapping[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict:
        fields = asdict(self)
        opt_in, per_trigger = fields.pop("opt_in"), fields.pop("per_trigger")
        return {**fields, **per_trigger, **opt_in}


def combined(
    ca: float,
    rates: Mapping[str | None, tuple[float, float, int]],
    n_test: int,
    classifier: str,
    ca_top5: float | None = None,
) -> Metrics:
    """Metrics from CA and each measured trigger's (ASR, RA, triggered images): one trigger's
    numbers as they are; several triggers' per part, with their means as the headline."""
    if not rates:
        return Metrics(ca, None, None, n_test, 0, classifier, ca_top5)
    if list(rates) == [None]:
        asr, ra, n = rates[None]
        return Metrics(ca, asr, ra, n_test, n, classifier, ca_top5)
    per_trigger = {
        f"{metric}_{name}": values[k]
        for k, metric in enumerate(PER_TRIGGER)
        for name, values in rates.items()
    }
    asrs, ras = [v[0] for v in rates.values()], [v[1] for v in rates.values()]
    return Metrics(ca, sum(asrs) / len(asrs), sum(ras) / len(ras), n_test,
                   sum(v[2] for v in rates.values()), classifier, ca_top5,
                   per_trigger=per_trigger)  # fmt: skip


def clean_accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return (predictions == labels).float().mean().item()


def attack_success_rate(predictions: torch.Tensor, labels: torch.Tensor, target: int) -> float:
    """Among triggered images whose true class is not the target, the fraction called target."""
    eligible = labels != target
    if not eligible.any():
        raise ValueError("no test image outside the target class: ASR is undefined")
    return (predictions[eligible] == target).float().mean().item()


def robust_accuracy(predictions: torch.Tensor, labels: torch.Tensor, target: int) -> float:
    """Among triggered non-target images, the fraction still given their true class."""
    eligible = labels != target
    if not eligible.any():
        raise ValueError("no test image outside the target class: RA is undefined")
    return (predictions[eligible] == labels[eligible]).float().mean().item()


def defense_effectiveness(before: Metrics, after: Metrics) -> float | None:
    """BackdoorBench's DER: [max(0, dASR) - max(0, dCA) + 1] / 2, in [0, 1]."""
    if before.asr is None or after.asr is None:
        return None
    asr_drop = max(0.0, before.asr - after.asr)
    ca_drop = max(0.0, before.ca - after.ca)
    return (asr_drop - ca_drop + 1) / 2


@torch.no_grad()
def zero_shot_weights(clip: ClipBundle, task: ZeroShotTask) -> torch.Tensor:
    """(D, C) classifier: per class, the mean of normalised prompt embeddings, renormalised."""
    device = next(clip.model.parameters()).device
    columns = []
    for name in task.classnames:
        tokens = clip.tokenize(task.prompts(name)).to(device)
        embedding = F.normalize(clip.model.encode_text(tokens).float(), dim=-1).mean(0)
        columns.append(F.normalize(embedding, dim=0))
    return torch.stack(columns, dim=1)


@torch.no_grad()
def predict(
    clip: ClipBundle,
    images: torch.Tensor,
    weights: torch.Tensor,
    batch_size: int = 512,
) -> torch.Tensor:
    """Zero-shot predictions for uint8 images, streamed in batches."""
    clip.model.eval()
    device = weights.device
    predictions = []
    for start in range(0, len(images), batch_size):
        batch = clip.normalize(images[start : start + batch_size].to(device))
        features = F.normalize(clip.model.encode_image(batch).float(), dim=-1)
        predictions.append((features @ weights).argmax(dim=1).cpu())
    return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long)


@torch.no_grad()
def predict_with_head(clip: ClipBundle, images: torch.Tensor, batch_size: int = 512):
    """Predictions of a supervised head on the normalised image features."""
    clip.model.eval()
    clip.head.eval()
    device = next(clip.model.parameters()).device
    predictions = []
    for start in range(0, len(images), batch_size):
        batch = clip.normalize(images[start : start + batch_size].to(device))
        features = F.normalize(clip.model.encode_image(batch).float(), dim=-1)
        predictions.append(clip.head(features).argmax(dim=1).cpu())
    return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long)


def evaluate(
    clip: ClipBundle,
    test: PairSet,
    task: ZeroShotTask,
    target: int,
    trigger: TriggerFn | None,
    seed: int,
    parts: Mapping[str, TriggerPart] | None = None,
) -> Metrics:
    """CA on the clean test set; ASR and RA on the triggered non-target images.

    The trigger gets its own seeded generator, so a random trigger (fresh noise per image)
    is the same at every evaluation of the same run. With `parts` (an attack with several
    triggers) each part is measured instead, on the same test images, against its own target
    and with its own named generator (`part_stream`); ASR and RA are the parts' means.
    """
    if is_streamed(test):
        return evaluate_streamed(clip, test, task, target, trigger, seed, parts=parts)
    if clip.head is not None:
        classifier = "linear-head"

        def classify(images: torch.Tensor) -> torch.Tensor:
            return predict_with_head(clip, images)
    else:
        classifier = "zero-shot"
        weights = zero_shot_weights(clip, task)

        def classify(images: torch.Tensor) -> torch.Tensor:
            return predict(clip, images, weights)

    clean = classify(test.images)
    ca = clean_accuracy(clean, test.labels)
    rates = {}
    for name, part_trigger, part_target, part_seed in measured_triggers(
        trigger, target, seed, parts
    ):
        eligible = test.labels != part_target
        triggered = trigger_test_images(test.images, test.labels, part_target, part_trigger,
                                        part_seed)  # fmt: skip
        predictions = classify(triggered)
        labels = test.labels[eligible]
        rates[name] = (attack_success_rate(predictions, labels, part_target),
                       robust_accuracy(predictions, labels, part_target),
                       int(eligible.sum()))  # fmt: skip
    return combined(ca, rates, len(test), classifier)


def evaluate_streamed(
    clip: ClipBundle,
    test: PairSet,
    task: ZeroShotTask,
    target: int,
    trigger: TriggerFn | None,
    seed: int,
    batch_size: int = STREAM_BATCH,
    parts: Mapping[str, TriggerPart] | None = None,
) -> Metrics:
    """`evaluate` for test sets read from disk: one pass, memory bounded by the batch.

    Each batch is decoded by the loader workers, classified clean, then its non-target images
    are triggered (a generator seeded by the run's seed and the batch number) and classified
    again (each part of a several-trigger attack in turn, as `evaluate`). Only per-image
    predictions are kept. Under torchrun each rank evaluates every N-th batch and the
    predictions are gathered: the same numbers as one process. Adds top-5 CA when there are
    more than five classes."""
    model = clip.model.eval()
    device = next(model.parameters()).device
    head = clip.head.eval() if clip.head is not None else None
    weights = None if head is not None else zero_shot_weights(clip, task)
    k = min(5, len(task.classnames))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    @torch.no_grad()
    def scores(images: torch.Tensor) -> torch.Tensor:
        with autocast:
            features = model.encode_image(clip.normalize(images.to(device)))
        features = F.normalize(features.float(), dim=-1)
        return (head(features) if head is not None else features @ weights).float().cpu()

    measured = measured_triggers(trigger, target, seed, parts)
    world = distributed.world()
    batches = batches_of(len(test), batch_size)
    mine = list(range(world.rank, len(batches), world.size))
    done: dict[int, tuple] = {}
    for count, (images, positions) in enumerate(stream(test.images, [batches[n] for n in mine])):
        if count % 16 == 15:
            release_freed_memory()
        number = mine[count]
        labels = test.labels[positions]
        clean = scores(images)
        hits = (clean.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
        by_trigger = {}
        for name, part_trigger, part_target, part_seed in measured:
            eligible = labels != part_target
            hit = torch.empty(0, dtype=torch.long)
            if eligible.any():
                triggered = trigger_test_images(images, labels, part_target, part_trigger,
                                                part_seed, number)  # fmt: skip
                hit = scores(triggered).argmax(dim=1)
            by_trigger[name] = (hit, labels[eligible])
        done[number] = (clean.argmax(dim=1), hits, by_trigger)
    if world.size > 1:
        done = {n: r for part in distributed.gather_objects(done) for n, r in part.items()}
    top1, topk, by_trigger = zip(*(done[n] for n in range(len(batches))), strict=True)
    predictions = torch.cat(top1)
    ca = clean_accuracy(predictions, test.labels)
    ca_top5 = torch.cat(topk).float().mean().item() if len(task.classnames) > 5 else None
    classifier = "linear-head" if head is not None else "zero-shot"
    rates = {}
    for name, _, part_target, _ in measured:
        hit = torch.cat([batch[name][0] for batch in by_trigger])
        truth = torch.cat([batch[name][1] for batch in by_trigger])
        if not len(truth):
            raise BenchbdError("no test image outside the target class: ASR is undefined")
        rates[name] = (attack_success_rate(hit, truth, part_target),
                       robust_accuracy(hit, truth, part_target), len(truth))  # fmt: skip
    return combined(ca, rates, len(test), classifier, ca_top5)
