"""In-memory containers every data source produces and every attack, trainer and metric consumes.

Images are kept as uint8 tensors (N, 3, H, W): compact, exact under poisoning, and normalised
per batch on the way into the model, so no PIL decode sits in the training loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import torch

from benchbd.core.errors import BenchbdError
from benchbd.core.suggest import did_you_mean

_ARTICLE = re.compile(r"\ba (?=[aeiou])")


def fix_articles(text: str) -> str:
    """'a orange arrow' -> 'an orange arrow': templates always write 'a'."""
    return _ARTICLE.sub("an ", text)


UNLABELLED = -1


@dataclass(frozen=True)
class PairSet:
    """Image-caption pairs, with each pair's class index (UNLABELLED where no class is known)."""

    images: torch.Tensor
    captions: list[str]
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError("images must be a uint8 tensor of shape (N, 3, H, W)")
        if not (len(self.images) == len(self.captions) == len(self.labels)):
            raise ValueError("images, captions and labels must have the same length")

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, indices: torch.Tensor | list[int]) -> PairSet:
        index = torch.as_tensor(indices, dtype=torch.long)
        return PairSet(
            images=self.images[index],
            captions=[self.captions[i] for i in index.tolist()],
            labels=self.labels[index],
        )

    def with_changes(self, **changes: object) -> PairSet:
        return replace(self, **changes)


@dataclass(frozen=True)
class ZeroShotTask:
    """What zero-shot classification needs: class names, prompt templates, and class synonyms.

    Synonyms let attacks such as label-consistent find every caption that names a class.
    """

    classnames: list[str]
    templates: list[str]
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    fix_articles: bool = False  # write "an arrow" where a template says "a {}" (English prompts)
    # groups of interchangeable caption words (the dataset's own synonym table, for text views)
    synonym_groups: list[list[str]] = field(default_factory=list)

    def prompts(self, classname: str) -> list[str]:
        """Every template filled with a class name: the prompts zero-shot averages over."""
        texts = [template.format(classname) for template in self.templates]
        if self.fix_articles:
            texts = [fix_articles(text) for text in texts]
        return texts

    def names_for(self, classname: str) -> list[str]:
        """The class name and its synonyms: every word that names this class in a caption."""
        return [classname, *[s for s in self.synonyms.get(classname, []) if s != classname]]

    def class_index(self, name_or_index: str | int) -> int:
        """Resolve a target given as a class name or an index; raise ValueError otherwise."""
        if isinstance(name_or_index, int) or str(name_or_index).isdigit():
            index = int(name_or_index)
            if not 0 <= index < len(self.classnames):
                raise ValueError(
                    f"target index {index} is out of range (0..{len(self.classnames) - 1})"
                )
            return index
        if name_or_index in self.classnames:
            return self.classnames.index(name_or_index)
        raise ValueError(
            f"unknown target class {name_or_index!r}"
            f"{did_you_mean(str(name_or_index), self.classnames)}"
        )


@dataclass(frozen=True)
class BenchmarkData:
    """The disjoint splits a run needs, plus the zero-shot task they are labelled with.

    train: pretraining pairs, the ones an attacker poisons.
    clean: clean pairs that defenses finetune on (disjoint from train and test).
    test: labelled images for zero-shot evaluation (captions are unused there): reported on.
    validation: labelled images disjoint from test, for choosing defaults and recipes, so that
        the test split is only ever used to report (None when a source sets none aside).
    """

    name: str
    train: PairSet
    clean: PairSet
    test: PairSet
    task: ZeroShotTask
    fingerprint: str
    validation: PairSet | None = None
    # What the training pairs alone depend on, where a source can tell (the synthetic splits
    # are drawn independently): a poisoned model keyed on it is reused when only the sizes of
    # the evaluation or clean splits change. None: the whole dataset's fingerprint.
    train_fingerprint: str | None = None

    @property
    def train_key(self) -> str:
        """The fingerprint a model trained on `train` is cached under."""
        return self.train_fingerprint or self.fingerprint

    def evaluation(self, split: str) -> PairSet:
        """The labelled split a run reports on: "test" (the default) or "validation"."""
        if split == "test":
            return self.test
        if split != "validation":
            raise BenchbdError(f"unknown split {split!r}: choose test or validation")
        if self.validation is None or len(self.validation) == 0:
            raise BenchbdError(
                f"{self.name} has no validation split: set validation images aside with "
                "--validation-images N"
            )
        check_scorable(self.validation, self.task, self.name, "validation")
        return self.validation

    def __post_init__(self) -> None:
        """Refuse a test set no run can be scored on now, when the data is loaded: evaluation
        comes after pretraining, which would otherwise run for nothing first."""
        classes = self.task.classnames
        if len(classes) < 2:
            raise BenchbdError(
                f"{self.name}: the evaluation set has "
                f"{f'only one class ({classes[0]!r})' if classes else 'no classes'}; "
                "zero-shot classification needs at least two: evaluate on a labelled set with "
                "more classes (--eval-dataset)"
            )
        check_scorable(self.test, self.task, self.name)


def check_scorable(split: PairSet, task: ZeroShotTask, name: str, what: str = "test") -> None:
    """Refuse an evaluation split whose labelled images are all of one class (or none)."""
    present = split.labels[split.labels != UNLABELLED].unique().tolist()
    if not present:
        raise BenchbdError(f"{name}: the evaluation set has no labelled images")
    if len(present) == 1:
        raise BenchbdError(
            f"{name}: all {len(split)} {what} images are of one class "
            f"({task.classnames[present[0]]!r}); clean accuracy and attack success need "
            "images of at least two classes: set more images aside (--test-images, "
            "--validation-images) or evaluate on another set (--eval-dataset)"
        )
