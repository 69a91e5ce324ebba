"""Local outlier factor (Breunig et al., 2000), one of Detect-CLIP's density detectors (its
SLOF is the simplified variant): a pair's score is the ratio of its neighbours' local density
to its own, so a pair in a sparser spot than its neighbours scores above 1. scikit-learn's
`LocalOutlierFactor` with k = 16 neighbours: fitted on the clean split and scoring the
training pairs as new points (`novelty=True`), or fitted on the training pairs themselves
(`reference=train`, each pair's own factor). Reference set and sign: `defenses/screening.py`.
"""

from __future__ import annotations

import numpy as np

from benchbd.plugins import DefenseContext
from defenses.screening import EmbeddingScreen


class LocalOutlier(EmbeddingScreen):
    description = "Screen: drop the pairs of highest local outlier factor (scikit-learn LOF)."

    def score(self, queries: np.ndarray, references: np.ndarray, own: np.ndarray | None,
              context: DefenseContext) -> np.ndarray:  # fmt: skip
        from sklearn.neighbors import LocalOutlierFactor

        k = self.params.k
        if own is None:
            model = LocalOutlierFactor(n_neighbors=k, novelty=True).fit(references)
            return -model.score_samples(queries)
        model = LocalOutlierFactor(n_neighbors=k).fit(references)
        return -model.negative_outlier_factor_[own[:, 0]]
