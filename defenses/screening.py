"""What the built-in screening defenses share: embeddings of the training pairs from a model the
defender has, a reference set to measure local density against, and the rule that drops the
highest-scoring rows.

Detect-CLIP (Huang et al., ICLR 2025; public code HanxunH/Detect-CLIP-Backdoor-Samples) scores
each training pair by how far its embedding lies from its k nearest neighbours: its k-distance,
SLOF and DAO detectors return larger values for sparser neighbourhoods, and "a higher score
indicates more likely to be backdoor samples". Its reference set is the batch being scored
(2,048 pairs) at poison rates of 0.01-0.1 %, so a batch holds about one poisoned pair, whose
neighbours are then clean pairs far away.

The sign of that rule depends on the reference set. benchbd poisons 3 % of 20,000 pairs: 600
rows whose images the poisoned model maps to one tight cluster. Against the training pairs
themselves, with k below the number of poisons, a poisoned row's neighbours are other poisoned
rows, so poisons are far DENSER than clean pairs and "sparser is more suspicious" ranks them
last. The default reference is therefore the defender's clean split: it holds no poisoned pair,
a poisoned row's neighbours there are clean images far from the trigger's cluster, and
higher-is-sparser-is-suspicious holds at any poison rate. `reference=train` scores against the
training pairs themselves (each row against the others), as Detect-CLIP does, for comparison.
Measured (`python benchmarks/detection.py`, tiny badnet run, 82 poisons in 1,024 pairs, seed
0): k-distance AUROC 0.993 against the clean split, 0.305 against the training pairs at k = 16,
0.976 against them at k = 128, above the number of poisons.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchbd.data.pairs import PairSet
from benchbd.errors import BenchbdError
from benchbd.model import ClipBundle
from benchbd.params import Params, param
from benchbd.plugins import DefenseContext, Screening, ScreeningDefense, TrainingPairs
from benchbd.probe import probe_features

MODELS = ("poisoned", "clean")
REFERENCES = ("clean", "train")
FEATURES = ("image", "joint")


@dataclass(frozen=True)
class ScreenParams(Params):
    """What every built-in screen is told: which model embeds, what to drop."""

    model: str = param(
        "poisoned",
        "model whose embeddings are scored: poisoned (trained on these pairs) or clean "
        "(the run's model and recipe trained on the clean split)",
        choices=MODELS,
    )  # fmt: skip
    drop: float = param(
        0.05, "fraction of the training pairs dropped, highest scores first", min=0.0, max=0.9
    )


@dataclass(frozen=True)
class ReferenceParams(ScreenParams):
    """Where a detector on embeddings takes its reference pairs from, and which embeddings."""

    reference: str = param(
        "clean",
        "pairs the neighbours come from: clean (the defender's clean split) or train (the "
        "training pairs themselves, each row against the others)",
        choices=REFERENCES,
    )  # fmt: skip
    features: str = param(
        "image",
        "image embeddings, or joint: image and caption embeddings both serve as neighbours "
        "(Detect-CLIP's image-text setting)",
        choices=FEATURES,
    )  # fmt: skip


@dataclass(frozen=True)
class DensityParams(ReferenceParams):
    """A local-density detector's settings (Detect-CLIP's k = 16 by default)."""

    k: int = param(16, "neighbours that define a pair's neighbourhood", min=1)


@torch.no_grad()
def caption_features(clip: ClipBundle, captions: list[str], batch_size: int = 512):
    """L2-normalised caption embeddings, (N, D) on the CPU."""
    clip.model.eval()
    device = next(clip.model.parameters()).device
    chunks = []
    for start in range(0, len(captions), batch_size):
        tokens = clip.tokenize(captions[start : start + batch_size]).to(device)
        chunks.append(F.normalize(clip.model.encode_text(tokens).float(), dim=-1).cpu())
    return torch.cat(chunks)


def embeddings(clip: ClipBundle, pairs: PairSet, features: str = "image") -> np.ndarray:
    """The rows' image embeddings (N, D); for `joint`, their caption embeddings stacked below
    (2N, D), the image of row i at i."""
    images = probe_features(clip, pairs)
    if features == "image":
        return images.numpy().astype(np.float64)
    return torch.cat([images, caption_features(clip, pairs.captions)]).numpy().astype(np.float64)


def top_rows(scores: np.ndarray, fraction: float) -> list[int]:
    """The round(fraction * N) rows with the highest scores (the earlier row first on ties)."""
    count = int(round(fraction * len(scores)))
    order = np.argsort(-scores, kind="stable")
    return sorted(order[:count].tolist())


def check_k(k: int, references: int, what: str) -> None:
    if k >= references:
        raise BenchbdError(f"k={k} neighbours need more than {k} reference pairs; {what} has "
                           f"{references}: lower k")  # fmt: skip


class EmbeddingScreen(ScreeningDefense):
    """A detector on embeddings: `score(queries, references, itself, context)` returns one
    score per query row (higher = more suspicious). Queries are the training rows' image
    embeddings; the references are the clean split's, or the training rows' (each query is
    then reference row `itself[i]`, left out of its own neighbours)."""

    Params = DensityParams
    test_params = {"k": 4}

    def check(self, context: DefenseContext) -> None:
        k = getattr(self.params, "k", None)
        if k is not None and self.params.reference == "clean":
            check_k(k, len(context.clean), "the clean split")

    def screen(self, training: TrainingPairs, context: DefenseContext) -> Screening:
        clip = training.model(self.params.model)
        features = self.params.features
        queries = embeddings(clip, training.pairs, "image")
        if self.params.reference == "clean":
            references = embeddings(clip, context.clean, features)
            scores = self.score(queries, references, None, context)
        else:
            references = embeddings(clip, training.pairs, features)
            k = getattr(self.params, "k", None)
            if k is not None:
                check_k(k, len(references) - 1, "the training set")
            scores = self.score(queries, references, np.arange(len(queries)), context)
        return Screening(torch.from_numpy(scores), top_rows(scores, self.params.drop))

    @abstractmethod
    def score(self, queries: np.ndarray, references: np.ndarray, itself: np.ndarray | None,
              context: DefenseContext) -> np.ndarray:  # fmt: skip
        """One score per query; `itself[i]` is query i's own row among the references (to be
        left out of its neighbours), or None when the queries are not among them."""


def neighbours(queries: np.ndarray, references: np.ndarray, k: int,
               itself: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(distances, indices) of each query's k nearest references, sorted, itself left out
    (scikit-learn's `NearestNeighbors`, exact Euclidean search)."""
    from sklearn.neighbors import NearestNeighbors

    extra = 0 if itself is None else 1
    index = NearestNeighbors(n_neighbors=k + extra).fit(references)
    distances, found = index.kneighbors(queries)
    if itself is None:
        return distances, found
    keep = found != itself[:, None]
    # drop the query's own row where it was found, else the farthest (a duplicate at distance 0
    # may come first: either way k neighbours remain)
    keep[keep.all(axis=1), -1] = False
    return (distances[keep].reshape(len(queries), k), found[keep].reshape(len(queries), k))
