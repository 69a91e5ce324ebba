"""DAO, the dimensionality-aware outlier score Detect-CLIP finds best (Huang et al., ICLR
2025, after Anderberg et al., 2024), in its textbook form: for a pair x with neighbours
j = 1..k,

    DAO(x) = mean_j  LID(j) * log( d_k(x) / d_k(j) )

where d_k is the distance to the k-th nearest reference other than the point's own rows and
LID(j) the maximum-likelihood local intrinsic dimensionality at j, -k / sum_i log(d_i(j) /
d_k(j) + 1e-4) over j's own k neighbours (the 1e-4 as in Detect-CLIP's `DAODetector`). A pair
farther out than its neighbours, weighted by how many dimensions their neighbourhood spans,
scores high. Neighbours by scikit-learn's `NearestNeighbors`; k = 16. Where the public code
computes otherwise (its neighbours read one row off, the pair's reach at its (k+1)-th
neighbour, each neighbour's LID counting its distance 0 to itself) and what each does to the
AUROC: docs/fidelity.md. Reference set and sign: `defenses/screening.py`.
"""

from __future__ import annotations

import numpy as np
from benchbd.defenses.screening import EmbeddingScreen, neighbours

from benchbd.api import DefenseContext

TINY = 1e-12  # keeps a zero distance (a duplicate image) from giving log(0)


def lid_mle(distances: np.ndarray) -> np.ndarray:
    """Maximum-likelihood LID of each row from its sorted distances to k neighbours."""
    k = distances.shape[1]
    ratios = distances / (distances[:, -1:] + TINY) + 1e-4
    return -k / np.log(ratios).sum(axis=1)


class DAO(EmbeddingScreen):
    description = "Screen: drop the pairs of highest dimensionality-aware outlier score (DAO)."

    def score(self, queries: np.ndarray, references: np.ndarray, own: np.ndarray | None,
              context: DefenseContext) -> np.ndarray:  # fmt: skip
        k = self.params.k
        distances, found = neighbours(queries, references, k, own)
        itself = np.arange(len(references))[:, None]
        around, _ = neighbours(references, references, k, itself)
        reach, lid = around[:, -1], lid_mle(around)
        ratio = np.log((distances[:, -1:] + TINY) / (reach[found] + TINY))
        scores = (lid[found] * ratio).mean(axis=1)
        return np.nan_to_num(scores, nan=0.0, posinf=1e3, neginf=-1e3)
