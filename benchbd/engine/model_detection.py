"""The model-detector contract: is this trained model backdoored, and toward which class?

A defense changes a model or its data; a model detector only judges one. It is handed a
trained CLIP (`ClipBundle`), the zero-shot task and the defender's clean split (the same
clean pairs a defense gets), and answers with a score (higher = more likely backdoored) and,
if it can tell, the class it suspects the backdoor targets. It is a plugin kind of its own,
found through the `benchbd.model_detectors` entry-point group, because what measures it is a
set of models (a zoo, `benchbd zoo`), not one run: AUROC of its scores over clean and poisoned
models, F1 at a threshold fixed on the zoo's validation part, and how often the named target
is the attack's. docs/plugins.md describes the contract; `benchbd.api` exports it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from benchbd.core.errors import BenchbdError
from benchbd.core.params import Params
from benchbd.core.registry import Registry
from benchbd.engine.data.pairs import PairSet, ZeroShotTask
from benchbd.engine.model import ClipBundle
from benchbd.engine.plugins import NoParams
from benchbd.engine.step_report import StepReport


@dataclass
class DetectionContext:
    """What a model detector may use besides the model: the defender's clean pairs (disjoint
    from the model's training pairs and from every evaluation split), the zero-shot task (class
    names and prompts), a seed for anything it draws, and a progress callback."""

    clean: PairSet
    task: ZeroShotTask
    seed: int
    progress: Callable[[StepReport], None] | None = None


@dataclass(frozen=True)
class ModelVerdict:
    """A detector's answer for one model: its score (higher = more likely backdoored; any
    finite float, the zoo ranks and thresholds it), the class index it suspects the backdoor
    targets (None: it does not say), and facts about how it got there (kept in the scores
    file: an inverted trigger's norm, the steps it took)."""

    score: float
    target: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        score = float(self.score)
        if not math.isfinite(score):
            raise BenchbdError(f"a model detector's score must be finite, got {self.score!r}")
        object.__setattr__(self, "score", score)
        if self.target is not None:
            object.__setattr__(self, "target", int(self.target))


class ModelDetector(ABC):
    """A backdoor detector for whole models. Subclasses set `Params`, `description` and
    `detect`; the model they are given must be left as it was (work on a copy to change it)."""

    Params: ClassVar[type[Params]] = NoParams
    description: ClassVar[str] = ""
    # Parameters that make the detector cheap enough for a contract test (a few seconds on a
    # CPU); any parameter not named keeps its default.
    test_params: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, params: Params) -> None:
        self.params = params

    def check(self, context: DetectionContext) -> None:
        """Raise BenchbdError if this detector cannot run on `context` (e.g. too few clean
        images for a batch). Called before any model of a zoo is loaded."""
        return None

    @abstractmethod
    def detect(self, clip: ClipBundle, context: DetectionContext) -> ModelVerdict:
        """Score `clip`: higher = more likely backdoored."""


model_detectors: Registry[ModelDetector] = Registry("benchbd.model_detectors", ModelDetector)


def check_target(verdict: ModelVerdict, classes: int, name: str) -> ModelVerdict:
    """Refuse a verdict naming a class the task does not have."""
    if verdict.target is not None and not 0 <= verdict.target < classes:
        raise BenchbdError(f"model detector {name!r} named target {verdict.target}, but the "
                           f"task has {classes} classes")  # fmt: skip
    return verdict
