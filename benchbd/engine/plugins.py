"""The two plugin contracts, and the registries that find plugins through entry points.

An Attack poisons training pairs and triggers test images. A Defense acts at one stage of a
run, which it declares (`Defense.stage`): after pretraining it takes a model and clean data and
returns a model ("finetune", the default); before pretraining it screens the poisoned training
pairs and names the rows to drop ("screen", `ScreeningDefense`); it shapes pretraining itself
through the one training loop ("pretrain", `PretrainingDefense`); or it leaves the model as it is
and scores each input at test time, so that triggered inputs can be rejected ("input",
`InputDetector`). Each plugin declares its
parameters as a `Params` dataclass; the engine never names a concrete plugin.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from benchbd.core.errors import BenchbdError
from benchbd.core.params import Params
from benchbd.core.registry import Registry, clash_message
from benchbd.engine.data.pairs import PairSet, ZeroShotTask
from benchbd.engine.model import ClipBundle
from benchbd.engine.step_report import StepReport

if TYPE_CHECKING:  # the contracts name the loop's hook types without importing the loop
    from benchbd.engine.train import EpochHook, Objective

# Where a defense acts: on the trained model, on the training pairs before pretraining, or in
# pretraining itself, or on the inputs at test time. `Defense.stage` declares one; the pipeline
# runs each the same way.
STAGES = ("finetune", "screen", "pretrain", "input")

# A test-time trigger: uint8 (N, 3, H, W) images and a generator -> triggered images.
TriggerFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class NoParams(Params):
    """For plugins without parameters."""


@dataclass(frozen=True)
class AttackSetup:
    """What every attack is told, whatever its kind: target class, poison budget, seed."""

    target: int
    task: ZeroShotTask
    count: int
    seed: int
    # A clean CLIP the attacker may use (trained on clean data on first call, then cached).
    surrogate: Callable[[], ClipBundle] | None = field(default=None, compare=False)
    # The training pool the attack poisons (its `poison` argument), for an attack whose
    # trigger is computed from it (an optimised patch) and needed before or without
    # poisoning: a preview, or a reused poisoned model whose trigger is not cached.
    pool: Callable[[], PairSet] | None = field(default=None, compare=False)

    @property
    def target_name(self) -> str:
        return self.task.classnames[self.target]


@dataclass(frozen=True)
class TriggerPart:
    """One of several triggers an attack plants (`Attack.trigger_parts`), each its own backdoor
    with its own target class. Evaluation measures each part on its own: its ASR and RA over
    the test images outside its target, triggered with its trigger alone."""

    trigger: TriggerFn
    target: int


@dataclass(frozen=True)
class Poisoned:
    """An attack's output: the poisoned training set and the rows it changed (sorted)."""

    pairs: PairSet
    indices: list[int]


class Attack(ABC):
    """A backdoor attack. Subclasses set `Params`, `description` and `apply_trigger`.

    The default `poison` is the dirty-label recipe: pick `count` rows at random (seeded) among
    those whose class is not the target, trigger their images, and caption them with a random
    zero-shot template naming the target. Override `eligible` or `poison_captions` for variants.
    """

    Params: ClassVar[type[Params]] = NoParams
    description: ClassVar[str] = ""
    poisons: ClassVar[bool] = True  # False for the no-attack baseline
    # A reference point rather than an attack under study (the no-attack run): recorded in
    # the result file, so that tables can tell it apart without knowing its name.
    baseline: ClassVar[bool] = False
    # Parameters that make the plugin cheap enough for a contract test (a few seconds on a
    # CPU, e.g. two PGD steps instead of a hundred); any parameter not named keeps its default.
    test_params: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, params: Params, setup: AttackSetup) -> None:
        self.params = params
        self.setup = setup

    @abstractmethod
    def apply_trigger(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> triggered uint8 images of the same shape (test time)."""

    def poison_images(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The trigger as applied to training images; the test-time one unless overridden."""
        return self.apply_trigger(images, generator)

    def state(self) -> dict:
        """Anything drawn at random that a re-evaluation needs (recorded in the result file)."""
        return {}

    def trigger_parts(self) -> Mapping[str, TriggerPart]:
        """The backdoors of an attack that plants several, by name (letters, digits,
        underscores): each part's test-time trigger and its own target. Empty (the default) for
        an attack with one trigger, measured through `apply_trigger` against the run's target.

        With parts, evaluation measures each one on its own (`asr_<name>` and `ra_<name>` in
        `metrics.before` / `metrics.after`), and the headline ASR and RA are the parts' means.
        `apply_trigger` still stands for the attack as a whole where one trigger is needed:
        `benchbd show`, the trigger's visibility and the opt-in evaluations."""
        return {}

    def eligible(self, pairs: PairSet) -> torch.Tensor:
        """Indices of rows this attack may poison."""
        return torch.nonzero(pairs.labels != self.setup.target).flatten()

    def poison_captions(self, pairs: PairSet, rows: list[int], generator) -> list[str]:
        """Dirty-label captions: a random prompt template filled with the target class name."""
        prompts = self.setup.task.prompts(self.setup.target_name)
        picks = torch.randint(0, len(prompts), (len(rows),), generator=generator).tolist()
        return [prompts[k] for k in picks]

    def poison(self, pairs: PairSet) -> Poisoned:
        generator = torch.Generator().manual_seed(self.setup.seed)
        candidates = self.eligible(pairs)
        count = self.setup.count
        if count > len(candidates):
            raise BenchbdError(f"cannot poison {count} pairs: only {len(candidates)} are eligible")
        chosen = candidates[torch.randperm(len(candidates), generator=generator)[:count]]
        rows = sorted(chosen.tolist())
        if not rows:
            return Poisoned(pairs, [])
        images = pairs.images.clone()
        images[rows] = self.poison_images(pairs.images[rows], generator)
        captions = list(pairs.captions)
        for row, caption in zip(rows, self.poison_captions(pairs, rows, generator), strict=True):
            captions[row] = caption
        return Poisoned(pairs.with_changes(images=images, captions=captions), rows)


@dataclass
class DefenseContext:
    """What a defense may use: clean pairs (disjoint from training and test), the task, a seed."""

    clean: PairSet
    task: ZeroShotTask
    seed: int
    progress: Callable[[StepReport], None] | None = None


class Defense(ABC):
    """A backdoor defense: model in, model out. The input model may be changed in place.

    `stage` says when it acts: "finetune" (this contract: `apply` on the poisoned model),
    "screen" (`ScreeningDefense`) or "pretrain" (`PretrainingDefense`). The two others subclass
    this one, so every defense is found through the same entry-point group."""

    Params: ClassVar[type[Params]] = NoParams
    description: ClassVar[str] = ""
    stage: ClassVar[str] = "finetune"
    # The classifier the "after" metrics are measured with (`Metrics.classifier`): "zero-shot"
    # (the text classifier) or "linear-head" (a head the defense trains and attaches as
    # `ClipBundle.head`). DER is only fair between like classifiers, so for a linear-head
    # defense the pipeline measures "before" with a linear probe too (benchbd/engine/probe.py).
    classifier: ClassVar[str] = "zero-shot"
    # A reference point rather than a defense under study (the no-defense run): recorded in the
    # result file, so that the leaderboard never marks it the best defense of an attack.
    baseline: ClassVar[bool] = False
    # Parameters that make the defense cheap enough for a contract test (a few seconds on a
    # CPU: one short epoch on a few pairs); any parameter not named keeps its default.
    test_params: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, params: Params) -> None:
        self.params = params

    def labelled_for_probe(self, context: DefenseContext) -> PairSet | None:
        """The labelled clean images the linear-probe "before" is fitted on, for a defense
        whose `classifier` is "linear-head": the images its own head learns from, so the two
        heads had the same supervision. None for a zero-shot defense (no probe is needed)."""
        return None

    def check(self, context: DefenseContext) -> None:
        """Raise BenchbdError if this defense cannot run on `context` (too few clean pairs for
        a batch, no labels). Called before pretraining, so a run never trains for minutes and
        then fails at the defense."""
        return None

    @abstractmethod
    def apply(self, clip: ClipBundle, context: DefenseContext) -> ClipBundle:
        """Return the defended model."""

    def report(self) -> dict:
        """Facts about how the defense ran (recorded in the result file), after `apply`."""
        return {}


@dataclass(frozen=True)
class TrainingPairs:
    """What a screen is given: the training pairs as the attack left them (which rows it
    poisoned is not said) and the models a defender may have. Each model is built on first
    call: the poisoned model (trained on these pairs, already measured) or a clean one (the
    run's model and recipe trained on the clean split, cached like every model)."""

    pairs: PairSet
    poisoned_model: Callable[[], ClipBundle] = field(compare=False)
    clean_model: Callable[[], ClipBundle] = field(compare=False)

    def model(self, which: str) -> ClipBundle:
        """The model named "poisoned" or "clean", as a screen's `model` parameter says."""
        if which not in ("poisoned", "clean"):
            raise BenchbdError(f"a screen scores with the poisoned or the clean model, "
                               f"not {which!r}")  # fmt: skip
        return self.poisoned_model() if which == "poisoned" else self.clean_model()


@dataclass(frozen=True)
class Screening:
    """A screen's answer: a score per training row (higher = more suspicious; the pipeline
    measures AUROC and TPR at low FPR from it) and the rows to drop before pretraining again."""

    scores: torch.Tensor  # float, one per training row
    dropped: list[int]  # row indices, sorted, unique

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", torch.as_tensor(self.scores, dtype=torch.float64))
        object.__setattr__(self, "dropped", sorted({int(i) for i in self.dropped}))


class ScreeningDefense(Defense):
    """A defense that acts before pretraining: it scores the poisoned training pairs and drops
    the rows it suspects. The pipeline then pretrains a fresh model on the rows kept (same
    recipe, same seeds) and measures it as the defended model; the undefended poisoned model is
    "before". Implement `screen`; `apply` is the identity (nothing is finetuned after)."""

    stage: ClassVar[str] = "screen"

    @abstractmethod
    def screen(self, training: TrainingPairs, context: DefenseContext) -> Screening:
        """Score every row of `training.pairs` and name the rows to drop."""

    def apply(self, clip: ClipBundle, context: DefenseContext) -> ClipBundle:
        return clip


@dataclass
class PretrainingHooks:
    """How a defense shapes pretraining inside the one training loop (`benchbd.engine.train.train`):
    its own loss, a hook called at the start of every epoch (epoch 0 included) that may
    return the pairs the epoch trains on (the same rows in the same order; captions may
    differ), and recipe settings of its own. None (or empty) keeps the loop's own."""

    objective: Objective | None = None
    epoch_start: EpochHook | None = None
    # Recipe settings the defense trains with in place of the run's (e.g. its authors' peak
    # learning rate and warm-up: {"lr": 5e-4, "warmup_steps": 100}); empty keeps the run's.
    recipe: dict[str, Any] = field(default_factory=dict)


class PretrainingDefense(Defense):
    """A defense that shapes pretraining on the poisoned pairs (its own loss, its per-epoch
    choice of data). The pipeline pretrains a fresh model with it (same recipe, same seeds) and
    measures it as the defended model; the undefended poisoned model is "before". Implement
    `pretraining`; `apply` is the identity."""

    stage: ClassVar[str] = "pretrain"

    @abstractmethod
    def pretraining(self, pairs: PairSet, context: DefenseContext) -> PretrainingHooks:
        """The hooks pretraining on `pairs` runs with (called once, before the first step)."""

    def apply(self, clip: ClipBundle, context: DefenseContext) -> ClipBundle:
        return clip


class InputDetector(Defense):
    """A defense that acts at test time: the model is kept as it is, and each evaluation image
    gets a score (higher = more likely triggered). The pipeline (`benchbd.engine.input_stage`)
    calls `fit` once, then `score` on batches of clean validation images (to fix the rejection
    threshold at 5 % false positives there) and on the clean and triggered test images; it
    measures the detection (AUROC, AP, TPR at 1 % and 5 % FPR) and the CA and ASR left when the
    flagged inputs are rejected. `apply` is the identity."""

    stage: ClassVar[str] = "input"

    def fit(self, clip: ClipBundle, context: DefenseContext) -> None:
        """Prepare from the defender's clean split and the model (statistics, references,
        prompt embeddings) before any image is scored. Nothing by default."""
        return None

    @abstractmethod
    def score(self, clip: ClipBundle, images: torch.Tensor,
              context: DefenseContext) -> torch.Tensor:  # fmt: skip
        """uint8 (N, 3, H, W) images -> N finite floats, higher for a more likely trigger.
        An image's score must not depend on the other images of the batch it is given (the
        engine batches as it likes): what is drawn at random is drawn once, in `fit`."""

    def apply(self, clip: ClipBundle, context: DefenseContext) -> ClipBundle:
        return clip


def stage_of(defense: type[Defense] | Defense) -> str:
    """The stage a defense declares, checked: an unknown one is refused by name."""
    stage = getattr(defense, "stage", "finetune")
    if stage not in STAGES:
        name = defense.__name__ if isinstance(defense, type) else type(defense).__name__
        raise BenchbdError(f"defense {name} declares stage {stage!r}; a defense acts at one of "
                           f"{', '.join(STAGES)}")  # fmt: skip
    return stage


attacks: Registry[Attack] = Registry("benchbd.attacks", Attack)
defenses: Registry[Defense] = Registry("benchbd.defenses", Defense)


def clash_warnings(attack: str = "", defense: str = "") -> list[str]:
    """One line per plugin name that two packages declare, attacks then defenses: `list`,
    `run` and `sweep` print them, so an installed package never replaces a plugin unseen.
    The bare `attack` or `defense` a command was given is left out: its own error says it."""
    return [clash_message(registry.kind_name, name, providers)
            for registry, given in ((attacks, attack), (defenses, defense))
            for name, providers in registry.clashes().items() if name != given]  # fmt: skip
