"""Real data: listings from csv:, hf: and imagefolder: sources, split into a run's three sets.

A run needs pairs to poison and train on, clean pairs for defenses, and a labelled test set
whose classes are the zero-shot task. With one source, clean and test rows are set aside from
it (seeded, disjoint); `|eval=SOURCE` and `|clean=SOURCE` name separate sets instead, e.g.
CC3M pairs for training and an ImageNet folder for evaluation, as in the CleanCLIP paper.
Sizes cap each split; 0 means every row available. A validation split (for choosing defaults,
never for reporting) is set aside from the labelled rows the test split comes from: at most
`sizes.validation` rows and at most a tenth of them, disjoint from test; 0 sets none aside.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from benchbd.core.cache import fingerprint
from benchbd.core.errors import BenchbdError
from benchbd.engine.data.hf import hf_listing
from benchbd.engine.data.images import LazyImages, StreamedPairSet
from benchbd.engine.data.listings import Listing, csv_listing, imagefolder_listing
from benchbd.engine.data.pairs import UNLABELLED, BenchmarkData, ZeroShotTask
from benchbd.engine.data.spec import SourceSpec, parse_run, parse_source

VERSION = 2  # bump when splitting or captioning changes what a real dataset's splits contain
SPLIT_SEED = 0  # the splits are part of the dataset, not of a run: every run sees the same ones

LISTINGS = {"csv": csv_listing, "hf": hf_listing, "imagefolder": imagefolder_listing}


def listing(spec: SourceSpec) -> Listing:
    """One source's rows; an error now, before any training, when none are left to use."""
    if spec.kind not in LISTINGS:
        raise BenchbdError(f"{spec.text()!r}: a split can come from csv:, hf: or imagefolder:")
    source = LISTINGS[spec.kind](spec)
    if source.size == 0:
        why = f": all {source.missing} image files are missing" if source.missing else ""
        raise BenchbdError(f"{source.name} has no rows left to use{why}")
    return source


def captions_for(source: Listing, rows: np.ndarray, rng: np.random.Generator) -> list[str]:
    """The pairs' captions; for a labelled set, a random prompt template per row filled with
    the row's class name (what a labelled set 'says' about each image)."""
    if source.captions is not None:
        return [source.captions[i] for i in rows]
    if source.labels is None or not source.templates:
        raise BenchbdError(f"{source.name} has neither captions nor labels with templates")
    picks = rng.integers(0, len(source.templates), len(rows))
    return [source.templates[k].format(source.classnames[source.labels[i]])
            for i, k in zip(rows, picks, strict=True)]  # fmt: skip


def labels_for(source: Listing, rows: np.ndarray, task: ZeroShotTask) -> torch.Tensor:
    """Class indices in the task's classes (by name, when the source has its own class list);
    UNLABELLED for pair sets and for classes the task does not have."""
    if source.labels is None:
        return torch.full((len(rows),), UNLABELLED, dtype=torch.long)
    index = {name: i for i, name in enumerate(task.classnames)}
    mapping = np.array([index.get(name, UNLABELLED) for name in source.classnames], np.int64)
    return torch.from_numpy(mapping[source.labels[rows]])


def pairs(source: Listing, rows: np.ndarray, task, size: int, rng) -> StreamedPairSet:
    rows = np.sort(rows)  # sequential reads; training shuffles anyway
    return StreamedPairSet(
        images=LazyImages(source.reader, rows, size),
        captions=captions_for(source, rows, rng),
        labels=labels_for(source, rows, task),
    )


HOW_TO_SET_ASIDE = {
    "test": "--eval-dataset SOURCE, or --test-images N to set N of its rows aside",
    "clean": "--clean-dataset SOURCE, or --clean-pairs N to set N of its rows aside",
}


def take(order: np.ndarray, start: int, count: int, role: str, name: str) -> np.ndarray:
    """The next `count` rows of the permutation, for the test or clean split."""
    if count == 0:
        raise BenchbdError(f"{name} has no separate {role} set: give {HOW_TO_SET_ASIDE[role]}")
    if start + count >= len(order):
        raise BenchbdError(
            f"{name} has {len(order)} rows: too few to set {count} aside for {role} and still train"
        )
    return order[start : start + count]


def validation_count(requested: int, labelled_rows: int) -> int:
    """Rows set aside for validation: as requested, but never more than a tenth of the
    labelled rows, so a small labelled set keeps most of its rows for testing and training."""
    return min(requested, labelled_rows // 10)


def cap(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` rows of n at random (all of them when count is 0 or at least n)."""
    if count == 0 or count >= n:
        return np.arange(n)
    return rng.permutation(n)[:count]


def load_real(text: str, sizes, image_size: int) -> BenchmarkData:
    """`--dataset TRAIN[|eval=SOURCE][|clean=SOURCE]` -> BenchmarkData with streamed splits."""
    main_text, roles = parse_run(text)
    main = listing(parse_source(main_text))
    test_source = listing(parse_source(roles["eval"])) if "eval" in roles else None
    if test_source is None and main.held_out is not None:
        test_source = listing(main.held_out)
    clean_source = listing(parse_source(roles["clean"])) if "clean" in roles else None
    labelled = test_source or main
    if labelled.labels is None:
        raise BenchbdError(f"{labelled.name} has captions but no classes to evaluate on: add "
                           "--eval-dataset imagefolder:PATH (or |eval=SOURCE)")  # fmt: skip
    task = ZeroShotTask(classnames=list(labelled.classnames), templates=list(labelled.templates))

    rng = np.random.default_rng(SPLIT_SEED)
    order = rng.permutation(main.size)
    used = 0
    if test_source is None:
        test_rows = take(order, used, sizes.test, "test", main.name)
        used += len(test_rows)
        test = pairs(main, test_rows, task, image_size, rng)
        n_validation = validation_count(sizes.validation, main.size)
        validation_rows = order[used : used + n_validation]
        used += n_validation
        validation = pairs(main, validation_rows, task, image_size, rng)
    else:
        held = rng.permutation(test_source.size)
        n_validation = validation_count(sizes.validation, test_source.size)
        validation = pairs(test_source, held[:n_validation], task, image_size, rng)
        rest_rows = held[n_validation:]
        test_rows = rest_rows if sizes.test == 0 else rest_rows[: sizes.test]
        test = pairs(test_source, test_rows, task, image_size, rng)
    if clean_source is None:
        clean_rows = take(order, used, sizes.clean, "clean", main.name)
        used += len(clean_rows)
        clean = pairs(main, clean_rows, task, image_size, rng)
    else:
        clean = pairs(clean_source, cap(clean_source.size, sizes.clean, rng), task,
                      image_size, rng)  # fmt: skip
    rest = order[used:]
    train_rows = rest if sizes.train == 0 else rest[: sizes.train]
    train = pairs(main, train_rows, task, image_size, rng)

    key = {"source": "real", "version": VERSION, "train": main.key,
           "eval": test_source.key if test_source else None,
           "clean": clean_source.key if clean_source else None,
           "sizes": asdict(sizes), "image_size": image_size}  # fmt: skip
    return BenchmarkData(text, train, clean, test, task, fingerprint(key),
                         validation=validation)  # fmt: skip


class RealSource:
    """A `DataSource` for one prefix; the prefix is part of the spec it re-reads."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def load(self, argument: str, sizes, image_size: int) -> BenchmarkData:
        return load_real(f"{self.kind}:{argument}", sizes, image_size)
