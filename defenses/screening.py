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
Measured (`python benchmarks/detection.py --attacks badnet --screens ...`, tiny badnet run, 82
poisons in 1,024 pairs, seed 0): k-distance AUROC 0.994 against the clean split, 0.303 against
the training pairs at k = 16, 0.977 against them at k = 128, above the number of poisons.

The normalisation takes part in that. benchbd L2-normalises the embeddings by default; the
public code scores them raw (`normalize=false`), where the poisons' larger or smaller norms set
them apart: against the training pairs at k = 16 the tiny run's k-distance AUROC is 0.839 raw
(0.840 with the captions as well, `features=image+text`, the public code's setting), and on
digits (31 poisons in 1,047 pairs) 1.000 raw against 0.073 normalised
(docs/fidelity.md). The defaults stay what every committed result ran; the public code's
setting is `reference=train features=image+text normalize=false`.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchbd.api import (
    BenchbdError,
    ClipBundle,
    DefenseContext,
    PairSet,
    Params,
    Screening,
    ScreeningDefense,
    TrainingPairs,
    param,
    probe_features,
)

MODELS = ("poisoned", "clean")
REFERENCES = ("clean", "train")
FEATURES = ("image", "image+text")


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
        "reference embeddings: image, or image+text: the reference pairs' images and captions "
        "(Detect-CLIP's setting; with reference=train a row's own caption is left out too)",
        choices=FEATURES,
    )  # fmt: skip
    normalize: bool = param(
        True,
        "L2-normalise the embeddings before scoring (false: raw, as Detect-CLIP scores them)",
        recorded_at_default=False,
    )  # fmt: skip


@dataclass(frozen=True)
class DensityParams(ReferenceParams):
    """A local-density detector's settings (Detect-CLIP's k = 16 by default)."""

    k: int = param(16, "neighbours that define a pair's neighbourhood", min=1)


@torch.no_grad()
def caption_features(clip: ClipBundle, captions: list[str], batch_size: int = 512,
                     normalize: bool = True) -> torch.Tensor:  # fmt: skip
    """Caption embeddings, (N, D) on the CPU, L2-normalised unless `normalize` is false."""
    clip.model.eval()
    device = next(clip.model.parameters()).device
    chunks = []
    for start in range(0, len(captions), batch_size):
        tokens = clip.tokenize(captions[start : start + batch_size]).to(device)
        features = clip.model.encode_text(tokens).float()
        chunks.append((F.normalize(features, dim=-1) if normalize else features).cpu())
    return torch.cat(chunks)


def image_embeddings(clip: ClipBundle, pairs: PairSet, normalize: bool = True) -> np.ndarray:
    """The rows' image embeddings (N, D), float64."""
    return probe_features(clip, pairs, normalize=normalize).numpy().astype(np.float64)


def reference_set(images: np.ndarray, captions: np.ndarray | None) -> np.ndarray:
    """The reference embeddings: the images (N, D), or with captions the images stacked over
    the captions (2N, D), the image of row i at i and its caption at N + i."""
    return images if captions is None else np.concatenate([images, captions])


def own_rows(count: int, features: str) -> np.ndarray:
    """Each training row's own reference rows when the training pairs are the reference set,
    (N, 1): its image; (N, 2) with captions: its image and its caption. Detect-CLIP leaves
    both out of a row's neighbours (the diagonal of each distance block)."""
    rows = np.arange(count)[:, None]
    return rows if features == "image" else np.hstack([rows, rows + count])


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
    """A detector on embeddings: `score(queries, references, own, context)` returns one
    score per query row (higher = more suspicious). Queries are the training rows' image
    embeddings; the references are the clean split's, or the training rows' (query i's own
    image and caption are then the reference rows `own[i]`, left out of its neighbours)."""

    Params = DensityParams
    test_params = {"k": 4}

    def check(self, context: DefenseContext) -> None:
        k = getattr(self.params, "k", None)
        if k is not None and self.params.reference == "clean":
            check_k(k, len(context.clean), "the clean split")

    def screen(self, training: TrainingPairs, context: DefenseContext) -> Screening:
        clip = training.model(self.params.model)
        text = self.params.features == "image+text"
        normalize = self.params.normalize
        queries = image_embeddings(clip, training.pairs, normalize)
        if self.params.reference == "clean":
            images = image_embeddings(clip, context.clean, normalize)
            captions = self.captions(clip, context.clean) if text else None
            scores = self.score(queries, reference_set(images, captions), None, context)
        else:
            captions = self.captions(clip, training.pairs) if text else None
            own = own_rows(len(queries), self.params.features)
            k = getattr(self.params, "k", None)
            if k is not None:
                check_k(k, len(queries) - 1, "the training set")
            scores = self.score(queries, reference_set(queries, captions), own, context)
        return Screening(torch.from_numpy(scores), top_rows(scores, self.params.drop))

    def captions(self, clip: ClipBundle, pairs: PairSet) -> np.ndarray:
        features = caption_features(clip, pairs.captions, normalize=self.params.normalize)
        return features.numpy().astype(np.float64)

    @abstractmethod
    def score(self, queries: np.ndarray, references: np.ndarray, own: np.ndarray | None,
              context: DefenseContext) -> np.ndarray:  # fmt: skip
        """One score per query; `own[i]` lists query i's own rows among the references (to be
        left out of its neighbours), or None when the queries are not among them."""


def neighbours(queries: np.ndarray, references: np.ndarray, k: int,
               own: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(distances, indices) of each query's k nearest references, sorted, its own rows left
    out (scikit-learn's `NearestNeighbors`, exact Euclidean search)."""
    from sklearn.neighbors import NearestNeighbors

    extra = 0 if own is None else own.shape[1]
    index = NearestNeighbors(n_neighbors=k + extra).fit(references)
    distances, found = index.kneighbors(queries)
    if own is None:
        return distances, found
    keep = ~(found[:, :, None] == own[:, None, :]).any(axis=2)
    # the first k rows that are not the query's own; where an own row was not found (duplicates
    # at distance 0 came first) the farthest extras go instead: either way k neighbours remain
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, 1), np.take_along_axis(found, order, 1)
