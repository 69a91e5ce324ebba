"""The run pipeline, in the order a reader expects: data, attack, pretrain, evaluate, defend,
evaluate, record.

The poisoned model is cached under a fingerprint of everything that shaped it, so a second run
with another defense against the same attack skips pretraining (and says so).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchbd import kernels
from benchbd.cache import (
    atomic_write_text,
    cache_dir,
    file_digest,
    fingerprint,
    load_cached_state,
    load_state,
    remove_stale_temporaries,
    save_state,
    writable_folder,
)
from benchbd.checks import check_fields, check_seed
from benchbd.data.pairs import PairSet
from benchbd.data.sources import DataSizes, load_data
from benchbd.errors import BenchbdError
from benchbd.evaluate import Metrics, defense_effectiveness, evaluate, triggered_examples
from benchbd.model import DEFAULT_MODEL, ClipBundle, create_clip, resolve_device
from benchbd.params import build
from benchbd.plugins import Attack, AttackSetup, DefenseContext, attacks, defenses
from benchbd.pretrained import pretrained_key
from benchbd.probe import linear_probe
from benchbd.results import (
    PluginRecord,
    RunResult,
    execution,
    read_result,
    result_filename,
    versions,
)
from benchbd.seeds import substream
from benchbd.train import StepReport, TrainConfig, train
from benchbd.visibility import trigger_visibility

MODEL_CACHE_VERSION = 3  # bump when the harness changes what a cached model would contain
VISIBILITY_IMAGES = 500  # triggered test images the trigger's visibility is measured on
SPLITS = ("test", "validation")  # what a run may report on; choosing defaults uses validation
# The attacker's own data: pairs of the training pool it poisons (web-scraped, before
# poisoning), a seeded sample this large, never the defender's clean pairs or an evaluation
# split. Attacks that optimise against a model train their surrogate on it.
ATTACKER_PAIRS = 5_000


@dataclass(frozen=True)
class RunConfig:
    """One cell of the benchmark: an attack against a defense, with everything that shapes it."""

    attack: str = "badnet"
    defense: str = "finetune"
    attack_params: dict[str, Any] = field(default_factory=dict)
    defense_params: dict[str, Any] = field(default_factory=dict)
    dataset: str = "synthetic"
    model: str = DEFAULT_MODEL
    target: str = "heart"
    poison_rate: float | None = 0.03
    poison_count: int | None = None
    seed: int = 0
    pretrain: TrainConfig = field(default_factory=TrainConfig)
    sizes: DataSizes = field(default_factory=DataSizes)
    device: str = "auto"
    # Pretrained weights (open_clip tag or checkpoint path). Alone: the model is taken as it is
    # and not trained on the poisoned pairs; with from_pretrained: it is finetuned on them.
    pretrained: str | None = None
    from_pretrained: bool = False
    # The labelled split the metrics are measured on: "test" reports, "validation" tunes.
    split: str = "test"

    def __post_init__(self) -> None:
        check_fields(self, owner="the run")
        check_seed(self.seed)
        if self.split not in SPLITS:
            raise BenchbdError(f"unknown split {self.split!r}: choose {' or '.join(SPLITS)}")
        for name, params in (("attack", self.attack_params), ("defense", self.defense_params)):
            if not isinstance(params, dict):
                raise BenchbdError(f"{name} parameters must be a table of name = value")
        if not isinstance(self.pretrain, TrainConfig) or not isinstance(self.sizes, DataSizes):
            raise BenchbdError("the run's pretrain recipe and sizes must be given as such")
        if self.from_pretrained and not self.pretrained:
            raise BenchbdError("--from-pretrained needs --pretrained TAG or a checkpoint path")
        if self.poison_count is not None and self.poison_count < 0:
            raise BenchbdError(f"poison count must be >= 0, got {self.poison_count}")
        if self.poison_count is None and (
            self.poison_rate is None or not 0 <= self.poison_rate <= 1
        ):
            raise BenchbdError(f"poison rate must be in [0, 1], got {self.poison_rate}")

    def poison_budget(self, n_pairs: int) -> int:
        if self.poison_count is not None:
            return self.poison_count
        return round(self.poison_rate * n_pairs)


class Observer:
    """What the pipeline reports while it works; the CLI draws it, the library stays silent."""

    def stage(self, name: str) -> None: ...

    def step(self, report: StepReport) -> None: ...

    def note(self, message: str) -> None: ...


def attack_params(config: RunConfig):
    cls = attacks.get(config.attack)
    return build(cls.Params, config.attack_params, owner=f"attack {config.attack!r}")


def build_attack(
    config: RunConfig, data, surrogate: Callable[[], ClipBundle] | None = None
) -> Attack:
    """The configured attack, told its target, poison budget, seed and surrogate."""
    cls = attacks.get(config.attack)
    params = attack_params(config)
    try:
        target = data.task.class_index(config.target)
    except ValueError as exc:
        raise BenchbdError(str(exc)) from None
    count = config.poison_budget(len(data.train)) if cls.poisons else 0
    setup = AttackSetup(target, data.task, count, substream(config.seed, "poison"), surrogate)
    return cls(params, setup)


def attacker_data(data, seed: int) -> tuple[PairSet, dict[str, Any]]:
    """The pairs the attacker holds, and their description for the result file: a seeded
    sample of the training pool (the pairs it poisons, before poisoning). The defender's clean
    split and the evaluation splits stay out of the attacker's reach."""
    count = min(ATTACKER_PAIRS, len(data.train))
    generator = torch.Generator().manual_seed(substream(seed, "attacker-data"))
    rows = torch.randperm(len(data.train), generator=generator)[:count].sort().values
    return data.train.subset(rows), {"source": "train", "pairs": count}


def surrogate_model(config: RunConfig, data, device, observer: Observer):
    """A factory for a clean CLIP trained on the attacker's data with the pretraining recipe,
    for attacks that optimise against a model. Trained on first call, cached like every
    model."""

    @functools.cache
    def build() -> ClipBundle:
        pairs, described = attacker_data(data, config.seed)
        key = {"version": MODEL_CACHE_VERSION, "surrogate_of": data.train_key,
               "attacker_data": described, "model": config.model,
               "pretrain": config.pretrain.to_dict(), "seed": config.seed}  # fmt: skip
        path = cache_dir() / "models" / f"surrogate-{fingerprint(key)}.pt"
        clip = create_clip(config.model, seed=substream(config.seed, "surrogate"), device=device)
        if restore(clip, load_cached_state(path)):
            observer.note(f"reusing cached surrogate model {path.stem}")
        else:
            if path.exists():
                observer.note(f"cached surrogate model {path.stem} is damaged; training it again")
            train(clip, pairs, config.pretrain, seed=substream(config.seed, "surrogate"),
                  stage="surrogate", progress=observer.step)  # fmt: skip
            save_state(path, clip.model.state_dict())
        return clip

    return build


def poisoned_fingerprint(config: RunConfig, data, attack: Attack) -> str:
    key = {
        "version": MODEL_CACHE_VERSION,
        "data": data.train_key,
        "attack": config.attack,
        "attack_params": attack.params.to_dict(),
        "target": attack.setup.target,
        "count": attack.setup.count,
        "model": config.model,
        "pretrain": config.pretrain.to_dict(),
        "seed": config.seed,
    }
    if config.pretrained:  # only when set, so that from-scratch fingerprints never change
        key["pretrained"] = pretrained_key(config.pretrained)
        key["from_pretrained"] = config.from_pretrained
    return fingerprint(key)


def poisoned_checkpoint(model_fp: str) -> Path:
    """Where the poisoned model with this fingerprint is cached (its record sits beside it)."""
    return cache_dir() / "models" / f"{model_fp}.pt"


def model_record_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".json")


def read_model_record(checkpoint: Path) -> dict[str, Any] | None:
    """What a cached poisoned model was trained on (its poisoned rows) and with how many CPU
    threads; None when there is no usable cached model: no checkpoint, no readable record of
    it, or a checkpoint whose content is not the one the record describes (truncated or
    overwritten), so that a damaged entry is trained again, never loaded."""
    path = model_record_path(checkpoint)
    if not checkpoint.is_file() or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        usable = isinstance(record.get("poison_indices"), list) and "threads" in record
        if usable and record.get("sha256") in (None, file_digest(checkpoint)):
            return record  # records written before digests were kept have none to check
    except (OSError, ValueError, AttributeError):
        pass
    return None  # unreadable or damaged: train again and overwrite it


def write_model_record(checkpoint: Path, indices: list[int], threads: int, level: str) -> None:
    record = {"poison_indices": indices, "threads": threads, "kernels": level,
              "sha256": file_digest(checkpoint)}  # fmt: skip
    atomic_write_text(model_record_path(checkpoint), json.dumps(record) + "\n")


def reusable(record: dict[str, Any] | None, level: str) -> bool:
    """A cached poisoned model is reused only by runs on the same CPU kernel level: a model
    trained with native kernels inside a portable run would make its numbers unportable."""
    return record is not None and record.get("kernels", "unrecorded") == level


def restore(clip: ClipBundle, state: dict | None) -> bool:
    """Load a cached state into `clip`; False (and `clip` untouched in effect, since it is then
    trained from its seeded start) when the state is missing or does not fit the model."""
    if state is None:
        return False
    expected = clip.model.state_dict()
    fits = state.keys() == expected.keys() and all(
        isinstance(state[k], torch.Tensor) and state[k].shape == v.shape
        for k, v in expected.items()
    )
    if not fits:  # checked first: a failed load_state_dict may leave some tensors copied
        return False
    clip.model.load_state_dict(state)
    clip.model.eval()
    return True


def run(config: RunConfig, observer: Observer | None = None, out: Path | None = None) -> RunResult:
    """Run one cell end to end; write its result file into `out` when given."""
    observer = observer or Observer()
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    total_start = clock

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    # Validate every name and parameter, and the output folder, before any expensive work.
    if out is not None:
        remove_stale_temporaries(writable_folder(out))
    remove_stale_temporaries(cache_dir() / "models")
    attack_params(config)
    defense_cls = defenses.get(config.defense)
    defense_params = build(
        defense_cls.Params, config.defense_params, owner=f"defense {config.defense!r}"
    )
    device = resolve_device(config.device)
    clip = create_clip(config.model, seed=substream(config.seed, "init"), device=device,
                       pretrained=config.pretrained)  # fmt: skip

    observer.stage("data")
    data = load_data(config.dataset, config.sizes, clip.image_size)
    evaluation = data.evaluation(config.split)  # refused now, not after pretraining
    defense = defense_cls(defense_params)
    context = DefenseContext(
        data.clean, data.task, substream(config.seed, "defense"), observer.step
    )
    defense.check(context)  # before pretraining: a defense that cannot run fails now
    lap("data_s")

    observer.stage("attack")
    attack = build_attack(config, data, surrogate_model(config, data, device, observer))
    model_fp = poisoned_fingerprint(config, data, attack)
    checkpoint = poisoned_checkpoint(model_fp)
    as_given = config.pretrained is not None and not config.from_pretrained
    kernel_info = kernels.describe(device=str(device))
    level = kernel_info["level"]
    record = None if as_given else read_model_record(checkpoint)
    if record and not reusable(record, level):
        observer.note(f"cached poisoned model {model_fp} was trained with "
                      f"{record.get('kernels', 'unrecorded')} kernels and this run uses "
                      f"{level}: training it again")  # fmt: skip
        record = None
    elif (record and not restore(clip, load_cached_state(checkpoint))) or (
        not record and not as_given and checkpoint.exists()
    ):
        observer.note(f"cached poisoned model {model_fp} is damaged or incomplete; "
                      "training it again")  # fmt: skip
        record = None
    # A cached poisoned model comes with the rows its attack poisoned, so the attack is not run
    # again (a hardened label-consistent attack spends half a minute on PGD).
    poisoned = None if record else attack.poison(data.train)
    indices = record["poison_indices"] if record else poisoned.indices
    pretrain_threads = record["threads"] if record else torch.get_num_threads()
    if out is not None:  # before pretraining: a run that may not write its result stops now
        keep_other_numbers(
            out,
            config,
            model_fp,
            defense_params,
            {
                "threads": torch.get_num_threads(),
                "kernels": level,
                "pretrain_threads": None if as_given else pretrain_threads,
                "pretrain_kernels": None if as_given else (record or {}).get("kernels", level),
            },
        )
    lap("attack_s")

    observer.stage("pretrain")
    if as_given:
        observer.note(f"pretrained weights {config.pretrained} used as they are (not trained)")
    elif record:
        observer.note(f"reusing cached poisoned model {model_fp} (pretraining skipped)")
    else:
        train(
            clip,
            poisoned.pairs,
            config.pretrain,
            seed=substream(config.seed, "pretrain"),
            stage="pretrain",
            progress=observer.step,
        )
        save_state(checkpoint, clip.model.state_dict())
        write_model_record(checkpoint, indices, pretrain_threads, level)
    lap("pretrain_s")

    observer.stage("evaluate")
    trigger = attack.apply_trigger if attack.poisons else None
    target = attack.setup.target
    eval_seed = substream(config.seed, "evaluate")
    before = evaluate(clip, evaluation, data.task, target, trigger, eval_seed)
    # How visible the trigger is, on the images ASR was just measured on (the first
    # VISIBILITY_IMAGES of them): a stealthy and a loud trigger of equal ASR are not equal.
    visibility = None
    if trigger is not None and before.n_triggered:
        visibility = trigger_visibility(*triggered_examples(
            evaluation, target, trigger, eval_seed, VISIBILITY_IMAGES))  # fmt: skip
    lap("evaluate_before_s")
    # A defense that replaces the zero-shot classifier with a trained head is compared with a
    # linear probe of the poisoned encoder, fitted on the defense's own labelled images, so
    # that its DER weighs like against like (fitted now: the defense may change `clip`).
    before_probe = None
    if defense.classifier == "linear-head":
        labelled = defense.labelled_for_probe(context)
        classes = len(data.task.classnames)
        probed = linear_probe(clip, labelled, classes, substream(config.seed, "probe"))
        before_probe = evaluate(probed, evaluation, data.task, target, trigger, eval_seed)
        lap("evaluate_probe_s")

    observer.stage("defend")
    defended: ClipBundle = defense.apply(clip, context)
    lap("defense_s")

    observer.stage("evaluate")
    after = evaluate(defended, evaluation, data.task, target, trigger, eval_seed)
    lap("evaluate_after_s")
    timings["total_s"] = round(time.perf_counter() - total_start, 3)

    # Threads and CPU kernels of the defense and of pretraining: an exact rerun needs both.
    runtime = {"device": str(device), "threads": torch.get_num_threads(),
               "pretrain_threads": None if as_given else pretrain_threads,
               "kernels": kernel_info,
               "pretrain_kernels": None if as_given else level}  # fmt: skip
    result = _record(config, data, attack, indices, defense_params, before, after,
                     model_fp, record is not None, timings, runtime, defense.report(),
                     visibility, before_probe)  # fmt: skip
    if out is not None:
        result.write(out)
    return result


def keep_other_numbers(out: Path, config: RunConfig, model_fp: str, defense_params,
                       planned: dict[str, Any]) -> None:  # fmt: skip
    """Refuse to replace a result file of the same experiment whose numbers were made with
    other CPU threads or kernels: its name is the same (threads and kernels are not part of the
    experiment), its numbers are not, and a reference result must never be silently replaced
    by a rerun on another machine setting. Delete the file, or write elsewhere, to rerun."""
    run_fp = run_fingerprint(model_fp, config, defense_params.to_dict())
    path = Path(out) / result_filename(config.attack, config.defense, config.seed, run_fp)
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


def load_poisoned(config: RunConfig, data=None) -> tuple[ClipBundle, Attack]:
    """The poisoned model `config` describes, with its attack, for scripts that study a defense
    outside `run()`: loaded from the cache, or trained and cached first (a run with no
    defense)."""
    if data is None:
        data = load_data(config.dataset, config.sizes, _image_size(config.model))
    attack = build_attack(config, data)
    checkpoint = poisoned_checkpoint(poisoned_fingerprint(config, data, attack))
    if read_model_record(checkpoint) is None:
        run(replace(config, defense="none", defense_params={}))
    clip = create_clip(config.model, seed=substream(config.seed, "init"),
                       device=resolve_device(config.device))  # fmt: skip
    clip.model.load_state_dict(load_state(checkpoint))
    clip.model.eval()
    return clip, attack


@functools.cache
def _image_size(model: str) -> int:
    return create_clip(model).image_size


def plan(config: RunConfig) -> tuple[str, str]:
    """(poisoned model fingerprint, run fingerprint) that `run(config)` will use, computed
    without training anything and validating every name and parameter on the way. The sweep
    uses them to skip finished cells and to train each poisoned model once."""
    attack_params(config)
    defense_cls = defenses.get(config.defense)
    defense_params = build(
        defense_cls.Params, config.defense_params, owner=f"defense {config.defense!r}"
    )
    data = load_data(config.dataset, config.sizes, _image_size(config.model))
    attack = build_attack(config, data)
    model_fp = poisoned_fingerprint(config, data, attack)
    return model_fp, run_fingerprint(model_fp, config, defense_params.to_dict())


def run_fingerprint(model_fp: str, config: RunConfig, defense_params: dict) -> str:
    return fingerprint({"poisoned": model_fp, "defense": config.defense,
                        "defense_params": defense_params, "split": config.split})  # fmt: skip


def _record(config, data, attack, indices, defense_params, before: Metrics, after: Metrics,
            model_fp, cached, timings, runtime, defense_report,
            visibility: dict | None = None,
            before_probe: Metrics | None = None) -> RunResult:  # fmt: skip
    defense_dict = defense_params.to_dict()
    metrics = {"before": before.to_dict(), "after": after.to_dict()}
    if before_probe is not None:
        metrics["before_probe"] = before_probe.to_dict()
    extra = {"attack_state": attack.state(), "defense_report": defense_report,
             "attacker_data": attacker_data(data, config.seed)[1]}  # fmt: skip
    # What DER's "before" is: the zero-shot poisoned model, or a linear probe of its encoder
    # when the defense's "after" is measured with a trained head.
    extra["der_basis"] = "zero-shot" if before_probe is None else "linear-probe"
    if visibility is not None:
        extra["trigger_visibility"] = visibility
    if config.pretrained:
        extra["pretrained"] = {"weights": config.pretrained, "finetuned": config.from_pretrained}
    return RunResult(
        attack=PluginRecord.of(
            config.attack, attacks.origin(config.attack), attack.params.to_dict()
        ),
        defense=PluginRecord.of(config.defense, defenses.origin(config.defense), defense_dict),
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
            "indices": indices,
        },
        pretrain=config.pretrain.to_dict(),
        metrics=metrics,
        der=defense_effectiveness(before if before_probe is None else before_probe, after),
        fingerprint=run_fingerprint(model_fp, config, defense_dict),
        poisoned_model_fingerprint=model_fp,
        pretrain_cached=cached,
        timings=timings,
        runtime=runtime,
        versions=versions(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        extra=extra,
    )


def trigger_examples(config: RunConfig, count: int) -> tuple[Attack, torch.Tensor, torch.Tensor]:
    """The attack `config` describes, with its first `count` non-target test images, clean and
    triggered exactly as `run` triggers them at evaluation (same attack seed, image size and
    trigger generator), for `benchbd show`. Nothing is trained: a test-time trigger does not
    depend on the model, and an attack that needs a surrogate only needs it to poison."""
    data = load_data(config.dataset, config.sizes, _image_size(config.model))
    attack = build_attack(config, data)
    clean, triggered = triggered_examples(data.test, attack.setup.target, attack.apply_trigger,
                                          substream(config.seed, "evaluate"), count)  # fmt: skip
    return attack, clean, triggered
