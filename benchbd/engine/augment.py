"""Views for in-modal contrastive terms: AutoAugment on uint8 image batches, EDA on captions.

Both are drawn anew at every step from a seeded generator (the reference code draws its text
views once, when the dataset is built, so every epoch sees the same augmented caption).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from torchvision.transforms import v2

EDA_OPERATIONS = ("synonym", "insert", "swap", "delete")
STOPWORDS = frozenset(
    "a an the of on in at to is there and or with over near one this that it its".split()
)

SynonymFn = Callable[[str], list[str]]


class ImageViews:
    """AutoAugment (ImageNet policy) on uint8 (N, 3, H, W) batches.

    torchvision v2 transforms take batched uint8 tensors, but a whole batch would share one
    random operation; per image they cost 15x more. So the batch is cut into groups of
    `group` images, each with its own draw of the policy, under a seed.
    """

    def __init__(self, group: int = 8) -> None:
        self.transform = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)
        self.group = group

    def __call__(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            groups = torch.split(images, self.group)
            return torch.cat([self.transform(group) for group in groups])


def table_synonyms(groups: list[list[str]]) -> SynonymFn:
    """Synonyms from groups of interchangeable words (a dataset's own table)."""
    lookup: dict[str, list[str]] = {}
    for group in groups:
        singles = [w for w in group if " " not in w]
        for word in singles:
            lookup.setdefault(word, []).extend(w for w in singles if w != word)
    return lambda word: lookup.get(word, [])


def wordnet_synonyms() -> SynonymFn | None:
    """WordNet synonyms when nltk and its wordnet data are installed; None otherwise."""
    try:
        from nltk.corpus import wordnet

        wordnet.synsets("dog")
    except (ImportError, LookupError, OSError):
        return None

    def synonyms(word: str) -> list[str]:
        names = {
            lemma.name().replace("_", " ").lower()
            for synset in wordnet.synsets(word)
            for lemma in synset.lemmas()
        }
        names.discard(word)
        return sorted(n for n in names if " " not in n)

    return synonyms


class TextViews:
    """EDA (Wei & Zou 2019): one of synonym replacement, random insertion, random swap and
    random deletion per caption, each at rate 0.1 of the caption's words."""

    def __init__(self, synonyms: SynonymFn, rate: float = 0.1) -> None:
        self.synonyms = synonyms
        self.rate = rate

    def __call__(self, captions: list[str], seed: int) -> list[str]:
        rng = random.Random(seed)
        return [self.augment(caption, rng.choice(EDA_OPERATIONS), rng) for caption in captions]

    def augment(self, caption: str, operation: str, rng: random.Random) -> str:
        words = caption.split()
        if not words:
            return caption
        n = max(1, round(self.rate * len(words)))
        if operation == "synonym":
            candidates = [i for i, w in enumerate(words) if w not in STOPWORDS and self.synonyms(w)]
            rng.shuffle(candidates)
            for i in candidates[:n]:
                words[i] = rng.choice(self.synonyms(words[i]))
        elif operation == "insert":
            for _ in range(n):
                pool = [w for w in words if w not in STOPWORDS and self.synonyms(w)]
                if not pool:
                    break
                synonym = rng.choice(self.synonyms(rng.choice(pool)))
                words.insert(rng.randrange(len(words) + 1), synonym)
        elif operation == "swap":
            for _ in range(n):
                if len(words) < 2:
                    break
                i, j = rng.sample(range(len(words)), 2)
                words[i], words[j] = words[j], words[i]
        elif operation == "delete":
            kept = [w for w in words if rng.random() > self.rate]
            words = kept or [rng.choice(words)]
        else:
            raise ValueError(f"unknown EDA operation {operation!r}")
        return " ".join(words)
