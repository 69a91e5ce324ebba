"""SafeCLIP's split of the training pairs (Yang et al., ICML 2024), as a screen: the cosine
similarity of each pair's image and caption embeddings, and a two-component
`GaussianMixture` (scikit-learn) fitted on those similarities. SafeCLIP treats the
LOW-similarity pairs as risky: a pair is kept (SafeCLIP's "safe") when its posterior
probability of the higher-mean component is at least `safe_probability`, and dropped
otherwise. The score is minus the similarity, so the lowest-similarity pairs rank as the most
suspicious.

Which model embeds matters more here than for the density detectors. SafeCLIP measures the
similarities with a model that has not yet learned the poisoned pairs (warmed up on in-modal
losses, then one epoch of the CLIP loss), where a poisoned pair, an image of one class
captioned with another, is mismatched and so dissimilar. A model trained on the poisoned pairs
has learned exactly those pairs, and ranks them as the MOST similar (`python
benchmarks/detection.py`, tiny badnet run, 82 poisons in 1,024 pairs: AUROC 0.291 with the
poisoned model, 0.603 with the clean one). The default is therefore the defender's clean
model: the run's model and recipe trained on the clean split, which has never seen a poisoned
pair. The public SafeCLIP code's first safe set is the pairs with
posterior at least 0.9 of the high-similarity component, hence the default threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from benchbd.defenses.screening import MODELS, caption_features

from benchbd.api import (
    DefenseContext,
    Params,
    Screening,
    ScreeningDefense,
    TrainingPairs,
    param,
    probe_features,
    substream,
)


@dataclass(frozen=True)
class CosineParams(Params):
    model: str = param(
        "clean",
        "model whose embeddings are compared: clean (the run's model and recipe trained on "
        "the clean split) or poisoned (trained on these pairs)",
        choices=MODELS,
    )  # fmt: skip
    safe_probability: float = param(
        0.9, "posterior of the high-similarity component a pair needs to be kept",
        min=0.0, max=1.0,
    )  # fmt: skip


def pair_similarities(clip, pairs) -> np.ndarray:
    """Cosine similarity of each pair's image and caption embeddings."""
    images = probe_features(clip, pairs)
    captions = caption_features(clip, pairs.captions)
    return (images * captions).sum(dim=1).numpy().astype(np.float64)


def high_component_probability(similarities: np.ndarray, seed: int) -> np.ndarray:
    """Each pair's posterior probability of the higher-mean component of a two-component
    Gaussian mixture fitted on the similarities (SafeCLIP's "clean probability")."""
    from sklearn.mixture import GaussianMixture

    values = similarities.reshape(-1, 1)
    mixture = GaussianMixture(n_components=2, random_state=seed).fit(values)
    return mixture.predict_proba(values)[:, int(np.argmax(mixture.means_.ravel()))]


class CosineGMM(ScreeningDefense):
    description = ("Screen: drop the low image-caption similarity pairs a 2-component GMM "
                   "finds (SafeCLIP).")  # fmt: skip
    Params = CosineParams
    # On a tiny test model the two components can split a few pairs from the rest; tests keep
    # every pair so the model trained on what is kept still has a full batch.
    test_params = {"safe_probability": 0.0}

    def screen(self, training: TrainingPairs, context: DefenseContext) -> Screening:
        similarities = pair_similarities(training.model(self.params.model), training.pairs)
        safe = high_component_probability(similarities, substream(context.seed, "gmm"))
        dropped = np.flatnonzero(safe < self.params.safe_probability).tolist()
        self.facts = {"similarity_mean": float(similarities.mean()),
                      "kept_fraction": 1 - len(dropped) / len(similarities)}  # fmt: skip
        return Screening(torch.from_numpy(-similarities), dropped)

    def report(self) -> dict:
        return getattr(self, "facts", {})
