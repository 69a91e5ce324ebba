"""The run pipeline, in the order a reader expects: data, attack, pretrain, evaluate, defend,
evaluate, record.

`run()` is that sequence and nothing else; each step is a small function below it. The defend
step is the same for every stage a defense declares: `benchbd.engine.stages` first makes the model
the defense's `apply` gets (the poisoned one; or one pretrained on the rows a screen kept, or
under a pretraining defense), and "before" is always the undefended poisoned model. What a run
is comes from `engine.run_config` (the description), `engine.planning` (its attack and
fingerprints) and `benchbd.engine.model_cache` (the poisoned model, trained once and reused by every
run against the same attack, which says so).
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchbd.core import kernels
from benchbd.core.cache import remove_stale_temporaries, writable_folder
from benchbd.core.errors import BenchbdError
from benchbd.core.registry import PluginInfo, bare_name
from benchbd.core.results import (
    PluginRecord,
    RunResult,
    execution,
    read_result,
    result_filename,
    versions,
)
from benchbd.core.seeds import substream
from benchbd.engine import model_cache
from benchbd.engine.data.pairs import BenchmarkData, PairSet, ZeroShotTask
from benchbd.engine.evaluate import (
    Metrics,
    TriggerPart,
    defense_effectiveness,
    evaluate,
    triggered_examples,
)
from benchbd.engine.model import ClipBundle, create_clip, resolve_device
from benchbd.engine.model_cache import MODEL_CACHE_VERSION  # noqa: F401  (re-exported)
from benchbd.engine.objectives import pretraining_objective
from benchbd.engine.planning import (  # noqa: F401  (plan and ATTACKER_PAIRS re-exported)
    ATTACKER_PAIRS,
    attacker_data,
    attacker_data_description,
    build_attack,
    load_experiment_data,
    plan,
    poisoned_fingerprint,
    preflight,
    run_fingerprint,
)
from benchbd.engine.plugin_records import plugin_record_of
from benchbd.engine.plugins import Attack, Defense, DefenseContext, attacks, defenses
from benchbd.engine.probe import labelled_rows, linear_probe, probe_metrics
from benchbd.engine.retrieval import retrieval_metrics
from benchbd.engine.run_config import SPLITS, RunConfig  # noqa: F401  (re-exported)
from benchbd.engine.stages import PoisonedModel, StagedModel, StageInputs, defended_model
from benchbd.engine.train import StepReport, train
from benchbd.engine.visibility import trigger_visibility

VISIBILITY_IMAGES = 500  # triggered test images the trigger's visibility is measured on


class Observer:
    """What the pipeline reports while it works; the CLI draws it, the library stays silent."""

    def stage(self, name: str) -> None: ...

    def step(self, report: StepReport) -> None: ...

    def note(self, message: str) -> None: ...


class Stopwatch:
    """Seconds per step, for the result file's `timings`."""

    def __init__(self) -> None:
        self.start = self.clock = time.perf_counter()
        self.timings: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.clock, 3)
        self.clock = now

    def total(self) -> dict[str, float]:
        return {**self.timings, "total_s": round(time.perf_counter() - self.start, 3)}


@dataclass(frozen=True)
class Measurements:
    """The numbers a run measures: before and after the defense, the linear-probe "before"
    of a linear-head defense, and the trigger's visibility."""

    before: Metrics
    after: Metrics
    before_probe: Metrics | None = None
    visibility: dict[str, Any] | None = None


def plugin_record(info: PluginInfo, params: dict[str, Any], role: str) -> PluginRecord:
    """A plugin as its result file records it: its own name and the package providing it
    (whichever spelling, bare or `PACKAGE:NAME`, the run was given)."""
    return plugin_record_of(info.name, info.package, params, role=role)


def run(config: RunConfig, observer: Observer | None = None, out: Path | None = None) -> RunResult:
    """Run one cell end to end; write its result file into `out` when given."""
    observer = observer or Observer()
    watch = Stopwatch()
    if out is not None:  # an unwritable folder is refused before any work
        remove_stale_temporaries(writable_folder(out))
    model_cache.remove_stale()
    device = resolve_device(config.device)
    kernel_info = kernels.describe(device=str(device))
    preflight(config)  # pretrained weights that cannot be had are refused before the data

    observer.stage("data")
    data = load_experiment_data(config)
    evaluation = data.evaluation(config.split)  # refused now, not after pretraining
    defense = defenses.get(config.defense)(config.defense_settings_for(len(data.clean)))
    context = DefenseContext(
        data.clean, data.task, substream(config.seed, "defense"), observer.step
    )
    defense.check(context)  # before pretraining: a defense that cannot run fails now
    check_opt_in(config, data)
    watch.lap("data_s")

    observer.stage("attack")
    attack = build_attack(config, data, surrogate_model(config, data, device, observer))
    clip = create_clip(config.model, seed=substream(config.seed, "init"), device=device,
                       pretrained=config.pretrained)  # fmt: skip
    poisoned = poison(config, data, attack, clip, kernel_info["level"], observer)
    if out is not None:  # before pretraining: a run that may not write its result stops now
        keep_other_numbers(out, config, poisoned, kernel_info["level"], defense.params.to_dict())
    watch.lap("attack_s")

    observer.stage("pretrain")
    pretrain(config, poisoned, clip, observer, data.task)
    watch.lap("pretrain_s")

    observer.stage("evaluate")
    before, visibility = measure_poisoned(config, data, evaluation, attack, clip)
    watch.lap("evaluate_before_s")
    if config.eval:  # before the defense, which may change `clip` in place
        before = replace(before, opt_in=opt_in_metrics(config, data, evaluation, attack, clip))
        watch.lap("evaluate_opt_in_before_s")
    before_probe = None
    if defense.classifier == "linear-head":
        before_probe = measure_probe(config, data, evaluation, attack, defense, context, clip)
        watch.lap("evaluate_probe_s")

    observer.stage("defend")  # a screen or pretraining defense first trains a model of its own
    staged = defended_model(StageInputs(config, data, attack, defense, context, poisoned, clip,
                                        device, observer.note, observer.step))  # fmt: skip
    defended: ClipBundle = defense.apply(staged.clip, context)
    watch.lap("defense_s")

    observer.stage("evaluate")
    after = staged.after or evaluate(defended, evaluation, data.task, attack.setup.target,
        trigger_of(attack), substream(config.seed, "evaluate"), parts_of(attack))  # fmt: skip
    watch.lap("evaluate_after_s")
    if config.eval:
        after = replace(after, opt_in=opt_in_metrics(config, data, evaluation, attack, defended))
        watch.lap("evaluate_opt_in_after_s")

    # Threads and CPU kernels of the defense and of pretraining: an exact rerun needs both.
    runtime = {"device": str(device), "threads": torch.get_num_threads(),
               "pretrain_threads": poisoned.threads, "kernels": kernel_info,
               "pretrain_kernels": poisoned.kernels}  # fmt: skip
    result = record(
        config=config,
        data=data,
        attack=attack,
        defense=defense,
        poisoned=poisoned,
        staged=staged,
        measured=Measurements(before, after, before_probe, visibility),
        timings=watch.total(),
        runtime=runtime,
    )
    if out is not None:
        result.write(out)
    return result


def surrogate_model(config: RunConfig, data: BenchmarkData, device, observer: Observer):
    """A factory for a clean CLIP trained on the attacker's data with the pretraining recipe,
    for attacks that optimise against a model. Trained on first call, cached like every
    model."""

    @functools.cache
    def build() -> ClipBundle:
        pairs, described = attacker_data(data, config.seed)
        key = {"surrogate_of": data.train_key, "attacker_data": described,
               "model": config.model, "pretrain": config.pretrain.to_dict(),
               "seed": config.seed}  # fmt: skip
        surrogate_fp = model_cache.surrogate_fingerprint(key)
        clip = create_clip(config.model, seed=substream(config.seed, "surrogate"), device=device)
        found = model_cache.lookup_surrogate(surrogate_fp, clip)
        if found.found:
            observer.note(f"reusing cached surrogate model surrogate-{surrogate_fp}")
            return clip
        if found.why_not:
            observer.note(found.why_not)
        seed = substream(config.seed, "surrogate")
        train(clip, pairs, config.pretrain, seed=seed, stage="surrogate", progress=observer.step,
              objective=pretraining_objective(config.pretrain, data.task, seed))  # fmt: skip
        model_cache.store_surrogate(surrogate_fp, clip)
        return clip

    return build


def poison(
    config: RunConfig,
    data: BenchmarkData,
    attack: Attack,
    clip: ClipBundle,
    level: str,
    observer: Observer,
) -> PoisonedModel:
    """The attack step: load the cached poisoned model into `clip` with the rows its attack
    poisoned, so the attack is not run again; otherwise poison the training pairs."""
    model_fp = poisoned_fingerprint(config, data, attack)
    if not config.trains_poisoned_model:
        poisoned = attack.poison(data.train)
        return PoisonedModel(model_fp, poisoned.indices, None, False, None, None)
    found = model_cache.lookup(model_fp, level, clip)
    if found.why_not:
        observer.note(found.why_not)
    if found.record is not None:
        return PoisonedModel(model_fp, found.record.poison_indices, None, True,
                             found.record.threads, found.record.kernels)  # fmt: skip
    poisoned = attack.poison(data.train)
    return PoisonedModel(model_fp, poisoned.indices, poisoned.pairs, False,
                         torch.get_num_threads(), level)  # fmt: skip


def pretrain(
    config: RunConfig, poisoned: PoisonedModel, clip: ClipBundle, observer: Observer,
    task: ZeroShotTask,
) -> None:  # fmt: skip
    """The pretraining step: train `clip` on the poisoned pairs and cache it, unless it came
    from the cache or the pretrained weights are used as they are. The recipe's objective is
    the CLIP loss, plus in-modal terms when its `inmodal_weight` is set (`task` gives the
    captions' synonyms)."""
    if not config.trains_poisoned_model:
        observer.note(f"pretrained weights {config.pretrained} used as they are (not trained)")
    elif poisoned.cached:
        observer.note(f"reusing cached poisoned model {poisoned.fingerprint} "
                      "(pretraining skipped)")  # fmt: skip
    else:
        seed = substream(config.seed, "pretrain")
        train(clip, poisoned.pairs, config.pretrain, seed=seed, stage="pretrain",
              progress=observer.step,
              objective=pretraining_objective(config.pretrain, task, seed))  # fmt: skip
        model_cache.store(poisoned.fingerprint, clip, poisoned.indices, poisoned.threads,
                          poisoned.kernels)  # fmt: skip


def trigger_of(attack: Attack):
    """The test-time trigger, or None for an attack that poisons nothing (no ASR to measure)."""
    return attack.apply_trigger if attack.poisons else None


def parts_of(attack: Attack) -> dict[str, TriggerPart]:
    """The triggers evaluation measures one by one (`Attack.trigger_parts`): empty for an
    attack with one trigger, or none."""
    return dict(attack.trigger_parts()) if attack.poisons else {}


def measure_poisoned(
    config: RunConfig, data: BenchmarkData, evaluation: PairSet, attack: Attack, clip: ClipBundle
) -> tuple[Metrics, dict[str, Any] | None]:
    """The poisoned model's metrics, and how visible the trigger is on the images ASR was just
    measured on (the first VISIBILITY_IMAGES): a stealthy and a loud trigger of equal ASR are
    not equal."""
    trigger, target = trigger_of(attack), attack.setup.target
    eval_seed = substream(config.seed, "evaluate")
    before = evaluate(clip, evaluation, data.task, target, trigger, eval_seed, parts_of(attack))
    visibility = None
    if trigger is not None and before.n_triggered:
        visibility = trigger_visibility(*triggered_examples(
            evaluation, target, trigger, eval_seed, VISIBILITY_IMAGES))  # fmt: skip
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
    return evaluate(probed, evaluation, data.task, attack.setup.target, trigger_of(attack),
                    substream(config.seed, "evaluate"), parts_of(attack))  # fmt: skip


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


def keep_other_numbers(
    out: Path,
    config: RunConfig,
    poisoned: PoisonedModel,
    level: str,
    defense_params: dict[str, Any],
) -> None:
    """Refuse to replace a result file of the same experiment whose numbers were made with
    other CPU threads or kernels: its name is the same (threads and kernels are not part of the
    experiment), its numbers are not, and a reference result must never be silently replaced
    by a rerun on another machine setting. Delete the file, or write elsewhere, to rerun."""
    planned = {"threads": torch.get_num_threads(), "kernels": level,
               "pretrain_threads": poisoned.threads,
               "pretrain_kernels": poisoned.kernels}  # fmt: skip
    run_fp = run_fingerprint(poisoned.fingerprint, config, defense_params)
    path = Path(out) / result_filename(
        bare_name(config.attack), bare_name(config.defense), config.seed, run_fp
    )
    if not path.exists():
        return
    try:
        existing = execution(read_result(path).get("runtime") or {})
    except ValueError:
        return  # not a readable result: replacing it loses nothing
    differ = [k for k, v in planned.items() if existing.get(k) != v]
    if differ:
        made = ", ".join(f"{k} {existing.get(k)}" for k in differ)
        now = ", ".join(f"{k} {planned[k]}" for k in differ)
        raise BenchbdError(
            f"{path} holds this experiment's result made with {made}; this run uses {now}, "
            "so its numbers would differ: write elsewhere with --out, or delete the file to "
            "replace it"
        )


def record(
    *,
    config: RunConfig,
    data: BenchmarkData,
    attack: Attack,
    defense: Defense,
    poisoned: PoisonedModel,
    measured: Measurements,
    timings: dict[str, float],
    runtime: dict[str, Any],
    staged: StagedModel | None = None,
) -> RunResult:
    """The result file's content: what ran, on what, and what it measured. A screen's
    detection numbers sit beside the metrics (`metrics.detection`); what a screen or
    pretraining defense trained is under `extra.stage` (and `extra.screen`)."""
    defense_dict = defense.params.to_dict()
    metrics = {"before": measured.before.to_dict(), "after": measured.after.to_dict()}
    if measured.before_probe is not None:
        metrics["before_probe"] = measured.before_probe.to_dict()
    if staged is not None and staged.detection is not None:
        metrics["detection"] = staged.detection
    extra = {"attack_state": attack.state(), "defense_report": defense.report(),
             "attacker_data": attacker_data_description(data),
             **(staged.extra() if staged is not None else {})}  # fmt: skip
    # What DER's "before" is: the zero-shot poisoned model, or a linear probe of its encoder
    # when the defense's "after" is measured with a trained head.
    extra["der_basis"] = "zero-shot" if measured.before_probe is None else "linear-probe"
    if measured.visibility is not None:
        extra["trigger_visibility"] = measured.visibility
    if config.pretrained:
        extra["pretrained"] = {"weights": config.pretrained, "finetuned": config.from_pretrained}
    der_before = measured.before if measured.before_probe is None else measured.before_probe
    return RunResult(
        attack=plugin_record(attacks.info(config.attack), attack.params.to_dict(), "attack"),
        defense=plugin_record(defenses.info(config.defense), defense_dict, "defense"),
        dataset={
            "name": data.name,
            "fingerprint": data.fingerprint,
            "sizes": asdict(config.sizes),
            "classes": len(data.task.classnames),
            "split": config.split,  # the labelled split the metrics were measured on
        },
        model=config.model,
        seed=config.seed,
        target={"index": attack.setup.target, "name": attack.setup.target_name},
        poison={
            "count": attack.setup.count,
            "rate": attack.setup.count / len(data.train),
            "indices": poisoned.indices,
        },
        pretrain=config.pretrain.to_dict(),
        metrics=metrics,
        der=defense_effectiveness(der_before, measured.after),
        fingerprint=run_fingerprint(poisoned.fingerprint, config, defense_dict),
        poisoned_model_fingerprint=poisoned.fingerprint,
        pretrain_cached=poisoned.cached,
        timings=timings,
        runtime=runtime,
        versions=versions(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        extra=extra,
    )


def load_poisoned(
    config: RunConfig, data: BenchmarkData | None = None
) -> tuple[ClipBundle, Attack]:
    """The poisoned model `config` describes, with its attack, for scripts that study a defense
    outside `run()`: loaded from the cache, or poisoned, trained and cached first, exactly as
    `run()` would."""
    observer = Observer()
    data = load_experiment_data(config) if data is None else data
    device = resolve_device(config.device)
    attack = build_attack(config, data, surrogate_model(config, data, device, observer))
    clip = create_clip(config.model, seed=substream(config.seed, "init"), device=device,
                       pretrained=config.pretrained)  # fmt: skip
    level = kernels.describe(device=str(device))["level"]
    pretrain(config, poison(config, data, attack, clip, level, observer), clip, observer,
             data.task)  # fmt: skip
    clip.model.eval()
    return clip, attack


def trigger_examples(config: RunConfig, count: int) -> tuple[Attack, torch.Tensor, torch.Tensor]:
    """The attack `config` describes, with its first `count` non-target test images, clean and
    triggered exactly as `run` triggers them at evaluation (same attack seed, image size and
    trigger generator), for `benchbd show`. No poisoned model is trained: a test-time trigger
    does not depend on it. A trigger optimised against the attacker's surrogate (BadCLIP's
    patch) is computed as poisoning computes it, training the surrogate if it is not cached."""
    data = load_experiment_data(config)
    surrogate = surrogate_model(config, data, resolve_device(config.device), Observer())
    attack = build_attack(config, data, surrogate)
    clean, triggered = triggered_examples(data.test, attack.setup.target, attack.apply_trigger,
                                          substream(config.seed, "evaluate"), count)  # fmt: skip
    return attack, clean, triggered
