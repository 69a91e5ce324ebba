"""Local outlier factor (Breunig et al., 2000) as scikit-learn computes it, beside Detect-CLIP's
detectors: a pair's score is the ratio of its neighbours' local reachability density to its
own, so a pair in a sparser spot than its neighbours scores above 1. This is scikit-learn's
`LocalOutlierFactor` with k = 16 neighbours, NOT Detect-CLIP's simplified LOF (reach
distances, no reachability smoothing): that one is the `slof` screen. Fitted on the clean split
and scoring the training pairs as new points (`novelty=True`), or fitted on the training pairs
themselves (`reference=train`, each pair's own factor; scikit-learn leaves out only the point
itself, so with `features=image+text` a pair's own caption may be among its neighbours).
Reference set and sign: `defenses/screening.py`.
"""

from __future__ import annotations

import numpy as np
from benchbd.defenses.screening import EmbeddingScreen

from benchbd.api import DefenseContext


class LocalOutlier(EmbeddingScreen):
    description = "Screen: drop the pairs of highest local outlier factor (scikit-learn's LOF)."

    def score(self, queries: np.ndarray, references: np.ndarray, own: np.ndarray | None,
              context: DefenseContext) -> np.ndarray:  # fmt: skip
        from sklearn.neighbors import LocalOutlierFactor

        k = self.params.k
        if own is None:
            model = LocalOutlierFactor(n_neighbors=k, novelty=True).fit(references)
            return -model.score_samples(queries)
        model = LocalOutlierFactor(n_neighbors=k).fit(references)
        return -model.negative_outlier_factor_[own[:, 0]]
