"""k-distance (Detect-CLIP, Huang et al., ICLR 2025): a training pair's score is the distance
from its image embedding to a far neighbour among the reference embeddings; the farther, the
sparser its neighbourhood and the more suspicious. Exactly as Detect-CLIP's
`KDistanceDetector` (backdoor_sample_detector/k_distance.py, `a[:, self.k]`): the distances to
the references other than the pair's own image (and, with captions, its own caption) sorted
and read at 0-based position k, so the (k + 1)-th nearest of them; k = 16 as in its scoring
script. Neighbours by scikit-learn's `NearestNeighbors` (exact Euclidean search). Why the
reference set is the clean split by default, and what that does to the sign of the rule at
benchbd's poison rate: `defenses/screening.py`; how it compares with the authors' code:
docs/fidelity.md.
"""

from __future__ import annotations

import numpy as np
from benchbd.defenses.screening import EmbeddingScreen, neighbours

from benchbd.api import DefenseContext


class KDistance(EmbeddingScreen):
    description = "Screen: drop the pairs farthest from their k-th nearest neighbour (Detect-CLIP)."

    def score(self, queries: np.ndarray, references: np.ndarray, own: np.ndarray | None,
              context: DefenseContext) -> np.ndarray:  # fmt: skip
        distances, _ = neighbours(queries, references, self.params.k + 1, own)
        return distances[:, -1]
