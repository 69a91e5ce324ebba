"""SLOF, Detect-CLIP's simplified local outlier factor (Huang et al., ICLR 2025; after Schubert
et al.'s simplified LOF, 2014): a pair's reach is the distance to a far neighbour among the
references, and its score the mean over its k nearest references j of

    SLOF(x) = mean_j  reach(x) / reach(j)

so a pair in a sparser spot than its neighbours scores above 1. As Detect-CLIP's
`SLOFDetector` (backdoor_sample_detector/slof.py) computes it: reach(x) is k-distance's, the
(k + 1)-th nearest reference other than the pair's own rows (`a[:, self.k]`); reach(j) is read
from j's sorted distances to every reference, itself included at distance 0, at 0-based
position k (`a_full_d[:, self.k]`), so j's k-th nearest reference other than itself (its own
caption not left out); a 0/0 or x/0 is scored 1,000 (`torch.nan_to_num`). One deviation, the
neighbours' identity: the public code looks the neighbours up by their column in a distance
matrix from which the own rows were removed, so every neighbour past a pair's own row is read
one (or, among captions, two) rows off; here the neighbours are the true k nearest, as in
`dao`. Its measured effect: docs/fidelity.md. Neighbours by scikit-learn's `NearestNeighbors`
(exact Euclidean search); k = 16. Reference set and sign: `defenses/screening.py`.
"""

from __future__ import annotations

import numpy as np
from benchbd.defenses.screening import EmbeddingScreen, neighbours

from benchbd.api import DefenseContext

UNDEFINED = 1000.0  # the public code's score for a 0/0 or x/0 ratio (torch.nan_to_num)


def reaches(references: np.ndarray, k: int) -> np.ndarray:
    """Each reference's distance at 0-based position k of its sorted distances to every
    reference, itself included (the public code's `a_full_d[:, self.k]`)."""
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=k + 1).fit(references)
    return index.kneighbors(references)[0][:, k]


class SLOF(EmbeddingScreen):
    description = "Screen: drop the pairs of highest simplified local outlier factor (Detect-CLIP)."

    def score(self, queries: np.ndarray, references: np.ndarray, own: np.ndarray | None,
              context: DefenseContext) -> np.ndarray:  # fmt: skip
        k = self.params.k
        distances, found = neighbours(queries, references, k + 1, own)
        reach = reaches(references, k)[found[:, :k]]
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = (distances[:, -1:] / reach).mean(axis=1)
        return np.nan_to_num(scores, nan=UNDEFINED, posinf=UNDEFINED, neginf=0.0)
