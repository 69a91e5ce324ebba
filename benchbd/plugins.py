"""The two plugin contracts, and the registries that find plugins through entry points.

An Attack poisons training pairs and triggers test images. A Defense takes a model and clean
data and returns a model. Each declares its parameters as a `Params` dataclass; the engine never
names a concrete plugin.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from benchbd.data.pairs import PairSet, ZeroShotTask
from benchbd.errors import BenchbdError
from benchbd.model import ClipBundle
from benchbd.params import Params
from benchbd.registry import Registry
from benchbd.step_report import StepReport


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

    @property
    def target_name(self) -> str:
        return self.task.classnames[self.target]


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
    """A backdoor defense: model in, model out. The input model may be changed in place."""

    Params: ClassVar[type[Params]] = NoParams
    description: ClassVar[str] = ""
    # The classifier the "after" metrics are measured with (`Metrics.classifier`): "zero-shot"
    # (the text classifier) or "linear-head" (a head the defense trains and attaches as
    # `ClipBundle.head`). DER is only fair between like classifiers, so for a linear-head
    # defense the pipeline measures "before" with a linear probe too (benchbd/probe.py).
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


attacks: Registry[Attack] = Registry("benchbd.attacks", Attack)
defenses: Registry[Defense] = Registry("benchbd.defenses", Defense)
