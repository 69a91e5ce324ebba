"""`--dataset digits`: scikit-learn's handwritten digits, a small real-image set that runs offline.

Why: the synthetic shapes are drawn by benchbd itself; the 1,797 digit scans bundled with
scikit-learn (8 x 8 grey, values 0-16, the digits 0-9) are real handwriting that needs no
download, so an attack or defense can be checked on real images anywhere in seconds.

Images: each scan is scaled to 0-255 and upscaled to the model's image size by nearest
neighbour (pure integer indexing: the same bytes on every machine and torch version, and each
8 x 8 cell stays one flat block), grey copied to three channels. They are built in memory at
each load rather than cached: measured on a busy 2-core machine, scikit-learn imports and reads
the set in about 1.4 s, then splitting, captioning and upscaling take 0.03 s at 32 px and 2 s at
224 px (270 MB of pixels), which a cached Arrow copy of the same bytes would barely beat.

Captions: a template filled with a synonym of the digit (its word, its numeral, "nought" for
zero) and, in some templates, a word for how heavy the strokes are, so the text tower must learn
that "7" and "seven" name one class. Each scan's caption is drawn once from a fixed seed, so it
does not depend on the split sizes.

Splits are part of the dataset: a fixed, seeded, class-balanced permutation gives the test
rows first, then validation, then clean, and the rest is training data. Sizes are caps on a
set of fixed size: test and clean need at least one row, validation is at most a tenth of the
scans (0 sets none aside, as for real sources), train 0 means every remaining row.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import torch

from benchbd.core.cache import fingerprint
from benchbd.core.errors import BenchbdError
from benchbd.engine.data import versions
from benchbd.engine.data.pairs import BenchmarkData, PairSet, ZeroShotTask, fix_articles
from benchbd.engine.data.sizes import DataSizes

SCANS = 1797  # rows in sklearn.datasets.load_digits
SPLIT_SEED = 0  # the splits and captions are part of the dataset, not of a run
# Default split sizes (experiment.default_sizes): a sixth of the scans each for test and clean,
# a twelfth for validation, the rest (1,047) for training.
TEST, CLEAN, VALIDATION = 300, 300, 150
OPTIONS = {"test": "--test-images", "validation": "--validation-images", "clean": "--clean-pairs"}
DEFAULTS = {"test": TEST, "validation": VALIDATION, "clean": CLEAN}

CLASSNAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CLASS_SYNONYMS: dict[str, list[str]] = {
    name: [name, str(digit)] + (["nought"] if digit == 0 else [])
    for digit, name in enumerate(CLASSNAMES)
}
STROKES = [["thin", "faint", "light"], ["neat", "clear"], ["bold", "thick", "heavy"]]

CAPTION_TEMPLATES = [  # each names the digit once; {stroke} describes the scan's ink
    "a handwritten {digit}",
    "a scan of the digit {digit}",
    "the number {digit} written by hand",
    "a {stroke} handwritten {digit}",
    "a grey scan of a {stroke} {digit}",
    "the digit {digit} in {stroke} strokes",
    "a low-resolution scan of the number {digit}",
    "a {digit} drawn by hand",
]
# Zero-shot prompts in the captions' own style (see synthetic.ZERO_SHOT_TEMPLATES for why).
ZERO_SHOT_TEMPLATES = [
    "a handwritten {}",
    "a scan of the digit {}",
    "the number {} written by hand",
    "a {} drawn by hand",
    "a low-resolution scan of the number {}",
]


_AN_EIGHT = re.compile(r"\ba (?=8\b)")  # "a 8" -> "an 8", as fix_articles does for words


def read_scans() -> tuple[np.ndarray, np.ndarray]:
    """The scans as uint8 0-255 (N, 8, 8) and their digits; values 0-16 scale exactly."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    values = np.rint(bunch.images).astype(np.int64)
    return ((values * 255 + 8) // 16).astype(np.uint8), bunch.target.astype(np.int64)


def upscale(scans: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour upscaling to (N, 3, size, size): output pixel i reads cell
    floor((i + 0.5) * 8 / size), computed in integers."""
    cells = (2 * np.arange(size) + 1) * scans.shape[-1] // (2 * size)
    grey = scans[:, cells][:, :, cells]
    return np.ascontiguousarray(np.broadcast_to(grey[:, None], (len(scans), 3, size, size)))


def captions(scans: np.ndarray, labels: np.ndarray) -> list[str]:
    """One caption per scan, from a fixed seed; stroke words follow the scan's ink (terciles)."""
    rng = np.random.default_rng([SPLIT_SEED, 1])
    ink = scans.reshape(len(scans), -1).astype(np.int64).sum(axis=1)
    stroke = np.searchsorted(np.quantile(ink, [1 / 3, 2 / 3]), ink, side="right")
    texts = []
    for label, heavy in zip(labels.tolist(), stroke.tolist(), strict=True):
        template = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
        synonyms = CLASS_SYNONYMS[CLASSNAMES[label]]
        words = STROKES[heavy]
        text = template.format(
            digit=synonyms[rng.integers(len(synonyms))], stroke=words[rng.integers(len(words))]
        )
        texts.append(_AN_EIGHT.sub("an ", fix_articles(text)))
    return texts


def balanced_order(labels: np.ndarray) -> np.ndarray:
    """A seeded permutation in rounds of one scan per class, so that every prefix (the test
    split comes first) holds every digit about equally often."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    rank = np.zeros(len(labels), np.int64)
    seen = np.zeros(labels.max() + 1, np.int64)
    for position, row in enumerate(perm):
        rank[position] = seen[labels[row]]
        seen[labels[row]] += 1
    return perm[np.argsort(rank, kind="stable")]


def split_counts(sizes: DataSizes, total: int) -> dict[str, int]:
    """Rows per split for the requested sizes; one line saying what to lower when they leave
    nothing to train on."""
    for name in ("test", "clean"):
        if getattr(sizes, name) < 1:
            raise BenchbdError(f"digits: {OPTIONS[name]} must be at least 1 "
                               f"(default {DEFAULTS[name]})")  # fmt: skip
    counts = {"test": sizes.test, "validation": min(sizes.validation, total // 10),
              "clean": sizes.clean}  # fmt: skip
    held = sum(counts.values())
    if held >= total:
        over = [n for n in counts if counts[n] > DEFAULTS[n]] or [max(counts, key=counts.get)]
        lower = " or ".join(f"{OPTIONS[n]} (default {DEFAULTS[n]})" for n in over)
        raise BenchbdError(
            f"digits has {total} scans: {counts['test']} test, {counts['validation']} "
            f"validation and {counts['clean']} clean images leave none to train on: lower {lower}"
        )
    rest = total - held
    counts["train"] = rest if sizes.train == 0 else min(sizes.train, rest)
    return counts


def pair_set(
    scans: np.ndarray, texts: list[str], labels: np.ndarray, rows: np.ndarray, size: int
) -> PairSet:
    """One split's rows, upscaled on their own (never the whole set at once at 224 px)."""
    rows = np.sort(rows)
    return PairSet(
        images=torch.from_numpy(upscale(scans[rows], size)),
        captions=[texts[i] for i in rows],
        labels=torch.from_numpy(labels[rows]),
    )


def task() -> ZeroShotTask:
    return ZeroShotTask(
        classnames=list(CLASSNAMES),
        templates=list(ZERO_SHOT_TEMPLATES),
        synonyms={k: list(v) for k, v in CLASS_SYNONYMS.items()},
        fix_articles=True,
        synonym_groups=[list(v) for v in CLASS_SYNONYMS.values()] + [list(s) for s in STROKES],
    )


class DigitsSource:
    """A `DataSource` for `--dataset digits` (see the module's docstring)."""

    version = versions.DIGITS.version  # changes when what this module draws changes

    def load(self, argument: str, sizes: DataSizes, image_size: int) -> BenchmarkData:
        if argument:
            raise BenchbdError(
                f"digits:{argument}: digits takes no argument (its splits are fixed); "
                "write --dataset digits"
            )
        scans, labels = read_scans()
        counts = split_counts(sizes, len(scans))
        order = balanced_order(labels)
        texts = captions(scans, labels)
        splits, start = {}, 0
        for name in ("test", "validation", "clean", "train"):
            splits[name] = pair_set(
                scans, texts, labels, order[start : start + counts[name]], image_size
            )
            start += counts[name]
        key = {"source": "digits", "version": self.version, "counts": counts,
               "scans": hashlib.sha256(scans.tobytes()).hexdigest(),
               "image_size": image_size}  # fmt: skip
        # train_fingerprint stays None: the training rows depend on every other split's size.
        return BenchmarkData("digits", splits["train"], splits["clean"], splits["test"], task(),
                             fingerprint(key), validation=splits["validation"])  # fmt: skip
