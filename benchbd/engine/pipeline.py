"""The run pipeline, in the order a reader expects: data, attack, pretrain, evaluate, defend,
evaluate, record.

`run()` is that sequence and nothing else; each step is a small function in the module that
owns it. The attack and pretraining steps are `benchbd.engine.poisoned_model`'s (the poisoned
model, trained once and reused, through `benchbd.engine.model_cache`, by every run against the
same attack, which says so); the measurements are `benchbd.engine.measurements`'. The defend
step is the same for every stage a defense declares: `benchbd.engine.stages` first makes the
model the defense's `apply` gets (the poisoned one; or one pretrained on the rows a screen
kept, or under a pretraining defense), and "before" is always the undefended poisoned model.
What a run is comes from `engine.run_config` (the description) and `engine.planning` (its
attack and fingerprints); the result file it writes is made by `record` below.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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
from benchbd.engine.data.pairs import BenchmarkData
from benchbd.engine.evaluate import defense_effectiveness
from benchbd.engine.measurements import (
    Measurements,
    check_opt_in,
    measure,
    measure_poisoned,
    measure_probe,
    opt_in_metrics,
)
from benchbd.engine.model import ClipBundle, create_clip, resolve_device
from benchbd.engine.observer import Observer
from benchbd.engine.planning import (
    attacker_data_description,
    build_attack,
    load_experiment_data,
    preflight,
    run_fingerprint,
)
from benchbd.engine.plugin_records import plugin_record_of
from benchbd.engine.plugins import Attack, Defense, DefenseContext, attacks, defenses
from benchbd.engine.poisoned_model import PoisonedModel, poison, pretrain, surrogate_model
from benchbd.engine.run_config import RunConfig, apply_resources
from benchbd.engine.stages import StagedModel, StageInputs, defended_model


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


def plugin_record(info: PluginInfo, params: dict[str, Any], role: str) -> PluginRecord:
    """A plugin as its result file records it: its own name and the package providing it
    (whichever spelling, bare or `PACKAGE:NAME`, the run was given)."""
    return plugin_record_of(info.name, info.package, params, role=role)


def run(config: RunConfig, observer: Observer | None = None, out: Path | None = None) -> RunResult:
    """Run one cell end to end; write its result file into `out` when given."""
    observer = observer or Observer()
    watch = Stopwatch()
    config = apply_resources(config)  # its threads in force here, and named by the config
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
    after = staged.after or measure(config, data, evaluation, attack, defended)
    watch.lap("evaluate_after_s")
    if config.eval:
        after = replace(after, opt_in=opt_in_metrics(config, data, evaluation, attack, defended))
        watch.lap("evaluate_opt_in_after_s")

    # Threads and CPU kernels of the defense and of pretraining: an exact rerun needs both.
    runtime = {"device": str(device), "threads": config.threads,
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
    planned = {"threads": config.threads, "kernels": level,
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
