"""What a run measures of a model: its metrics on the evaluation split (each trigger of a
several-trigger attack on its own), how visible the trigger is, the linear-probe "before" of a
defense with a trained head, and the opt-in evaluations (`RunConfig.eval`). Each step measures
one model, the poisoned one before the defense and the defended one after, with the run's
named evaluation stream, so "before" and "after" see the same triggered images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchbd.core.seeds import substream
from benchbd.engine.data.pairs import BenchmarkData, PairSet
from benchbd.engine.evaluate import Metrics, evaluate, triggered_examples
from benchbd.engine.model import ClipBundle
from benchbd.engine.plugins import Attack, Defense, DefenseContext, TriggerPart
from benchbd.engine.probe import labelled_rows, linear_probe, probe_metrics
from benchbd.engine.retrieval import retrieval_metrics
from benchbd.engine.run_config import RunConfig
from benchbd.engine.visibility import trigger_visibility

VISIBILITY_IMAGES = 500  # triggered test images the trigger's visibility is measured on


@dataclass(frozen=True)
class Measurements:
    """The numbers a run measures: before and after the defense, the linear-probe "before"
    of a linear-head defense, and the trigger's visibility."""

    before: Metrics
    after: Metrics
    before_probe: Metrics | None = None
    visibility: dict[str, Any] | None = None


def trigger_of(attack: Attack):
    """The test-time trigger, or None for an attack that poisons nothing (no ASR to measure)."""
    return attack.apply_trigger if attack.poisons else None


def parts_of(attack: Attack) -> dict[str, TriggerPart]:
    """The triggers evaluation measures one by one (`Attack.trigger_parts`): empty for an
    attack with one trigger, or none."""
    return dict(attack.trigger_parts()) if attack.poisons else {}


def measure(config: RunConfig, data: BenchmarkData, evaluation: PairSet, attack: Attack,
            clip: ClipBundle) -> Metrics:  # fmt: skip
    """`clip`'s metrics on the evaluation split: clean accuracy, and the attack's ASR and RA
    (each of its triggers' too), with the run's evaluation stream."""
    return evaluate(clip, evaluation, data.task, attack.setup.target, trigger_of(attack),
                    substream(config.seed, "evaluate"), parts_of(attack))  # fmt: skip


def measure_poisoned(
    config: RunConfig, data: BenchmarkData, evaluation: PairSet, attack: Attack, clip: ClipBundle
) -> tuple[Metrics, dict[str, Any] | None]:
    """The poisoned model's metrics, and how visible the trigger is on the images ASR was just
    measured on (the first VISIBILITY_IMAGES): a stealthy and a loud trigger of equal ASR are
    not equal."""
    trigger, target = trigger_of(attack), attack.setup.target
    before = measure(config, data, evaluation, attack, clip)
    visibility = None
    if trigger is not None and before.n_triggered:
        visibility = trigger_visibility(*triggered_examples(
            evaluation, target, trigger, substream(config.seed, "evaluate"),
            VISIBILITY_IMAGES))  # fmt: skip
    return before, visibility


def measure_probe(
    config: RunConfig,
    data: BenchmarkData,
    evaluation: PairSet,
    attack: Attack,
    defense: Defense,
    context: DefenseContext,
    clip: ClipBundle,
) -> Metrics:
    """A defense that replaces the zero-shot classifier with a trained head is compared with a
    linear probe of the poisoned encoder, fitted on the defense's own labelled images, so that
    its DER weighs like against like (fitted before the defense, which may change `clip`)."""
    labelled = defense.labelled_for_probe(context)
    classes = len(data.task.classnames)
    probed = linear_probe(clip, labelled, classes, substream(config.seed, "probe"))
    return measure(config, data, evaluation, attack, probed)


def check_opt_in(config: RunConfig, data: BenchmarkData) -> None:
    """Refuse now, before pretraining, an opt-in evaluation the data cannot give: the probe
    needs labelled clean images (a caption-only clean set has none)."""
    if "probe" in config.eval:
        labelled_rows(data.clean)


def opt_in_metrics(
    config: RunConfig, data: BenchmarkData, evaluation: PairSet, attack: Attack, clip: ClipBundle
) -> dict[str, float | None]:
    """The measurements `config.eval` asks for, of `clip` (the poisoned model, then the
    defended one), on the triggered images the zero-shot ASR is measured on. The probe is
    fitted on every labelled clean image, with its own named stream."""
    trigger, target = trigger_of(attack), attack.setup.target
    eval_seed = substream(config.seed, "evaluate")
    measured: dict[str, float | None] = {}
    if "probe" in config.eval:
        labelled, probe_seed = labelled_rows(data.clean), substream(config.seed, "eval-probe")
        measured |= probe_metrics(clip, labelled, evaluation, data.task, target, trigger,
                                  eval_seed, probe_seed)  # fmt: skip
    if "retrieval" in config.eval:
        measured |= retrieval_metrics(clip, evaluation, target, trigger, eval_seed)
    return measured
