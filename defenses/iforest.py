"""Isolation forest (Liu et al., 2008), one of the detectors Detect-CLIP compares: a pair
isolated by fewer random splits is more anomalous. scikit-learn's `IsolationForest` with 100
trees, fitted on the reference embeddings (the clean split, or the training pairs themselves
with `reference=train`; their captions too with `features=image+text`) and scoring the
training pairs' image embeddings; the score is minus scikit-learn's `score_samples`, so higher
is more anomalous: Detect-CLIP's `IsolationForestDetector` and its negation in
process_detection_scores.py. One deviation: the public code leaves the forest unseeded; here
it is seeded from the defense's seed, so a run repeats. Reference set and sign:
`defenses/screening.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from benchbd.defenses.screening import EmbeddingScreen, ReferenceParams

from benchbd.api import DefenseContext, param, substream


@dataclass(frozen=True)
class ForestParams(ReferenceParams):
    trees: int = param(100, "trees in the forest", min=1)


class IsolationForestScreen(EmbeddingScreen):
    description = "Screen: drop the pairs an isolation forest isolates fastest (scikit-learn)."
    Params = ForestParams
    test_params = {"trees": 10}

    def score(self, queries: np.ndarray, references: np.ndarray, own: np.ndarray | None,
              context: DefenseContext) -> np.ndarray:  # fmt: skip
        from sklearn.ensemble import IsolationForest

        seed = substream(context.seed, "iforest")  # in [0, 2**32), as scikit-learn takes
        forest = IsolationForest(n_estimators=self.params.trees, random_state=seed)
        return -forest.fit(references).score_samples(queries)
