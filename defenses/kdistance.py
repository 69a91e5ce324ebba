"""k-distance (Detect-CLIP, Huang et al., ICLR 2025): a training pair's score is the distance
from its image embedding to its k-th nearest reference embedding; the farther, the sparser its
neighbourhood and the more suspicious (Detect-CLIP's `KDistanceDetector`, k = 16 as in its
scoring script). Neighbours by scikit-learn's `NearestNeighbors` (exact Euclidean search on the
L2-normalised embeddings). Why the reference set is the clean split by default, and what that
does to the sign of the rule at benchbd's poison rate: `defenses/screening.py`.
"""

from __future__ import annotations

import numpy as np

from benchbd.plugins import DefenseContext
from defenses.screening import EmbeddingScreen, neighbours


class KDistance(EmbeddingScreen):
    description = "Screen: drop the pairs farthest from their k-th nearest neighbour (Detect-CLIP)."

    def score(self, queries: np.ndarray, references: np.ndarray, itself: np.ndarray | None,
              context: DefenseContext) -> np.ndarray:  # fmt: skip
        distances, _ = neighbours(queries, references, self.params.k, itself)
        return distances[:, -1]
