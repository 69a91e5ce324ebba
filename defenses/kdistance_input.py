"""k-distance at test time (Detect-CLIP, Huang et al., ICLR 2025), a CLIP-specific input score.

Detect-CLIP finds that CLIP maps backdoored images into a sparse region of its embedding space
(far from the clean data's neighbourhoods) and scores a sample by its k-distance: the distance
to its (k + 1)-th nearest reference, `a[:, self.k]` of the sorted distances in its
`KDistanceDetector` (backdoor_sample_detector/k_distance.py), k = 16 as in its scoring script.
Here the query is a test image and the references are the L2-normalised image embeddings of
the defender's clean split (the screen `kdistance` scores training pairs the same way), so no
query is among its references and nothing is left out. Higher = sparser = more likely
triggered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from benchbd.defenses.screening import neighbours

from benchbd.api import (
    BenchbdError,
    ClipBundle,
    DefenseContext,
    InputDetector,
    Params,
    encode_images,
    param,
)


@dataclass(frozen=True)
class KDistanceInputParams(Params):
    k: int = param(16, "the score is the distance to the (k + 1)-th nearest clean image", min=0)


class KDistanceInput(InputDetector):
    Params = KDistanceInputParams
    description = ("Input detection: an image far from its nearest clean images in CLIP's "
                   "embedding space is flagged (Detect-CLIP's k-distance).")  # fmt: skip
    test_params = {"k": 2}

    def check(self, context: DefenseContext) -> None:
        if len(context.clean) <= self.params.k:
            raise BenchbdError(f"k-distance needs more than k = {self.params.k} clean images; "
                               f"the clean split has {len(context.clean)}")  # fmt: skip

    def fit(self, clip: ClipBundle, context: DefenseContext) -> None:
        self.references = encode_images(clip, context.clean.images).numpy()

    def score(self, clip: ClipBundle, images: torch.Tensor,
              context: DefenseContext) -> torch.Tensor:  # fmt: skip
        queries = encode_images(clip, images).numpy()
        distances, _ = neighbours(queries, self.references, self.params.k + 1, None)
        return torch.from_numpy(np.ascontiguousarray(distances[:, -1]))
