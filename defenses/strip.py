"""STRIP (Gao et al., ACSAC 2019), on CLIP's zero-shot prediction.

A triggered input keeps its (target) prediction when another image is superimposed on it; a
clean one does not. STRIP superimposes N clean images on the input and averages the Shannon
entropy (base 2) of the class probabilities over the N blends: low entropy = likely
triggered, so the score is the negated mean entropy. As the authors' code computes it (STRIP's
`superimpose` and `entropyCal`, ported unchanged into BackdoorBox-style `core/defenses/STRIP.py`):
the blend is `cv2.addWeighted(background, 1, overlay, 1, 0)`, the plain unclipped sum of the two
images, and the entropy `-nansum(p * log2 p)` over the N blends divided by N. The
probabilities here are CLIP's zero-shot softmax (temperature times cosine similarity to each
class's prompt embedding). `blend=mean` averages the two images instead (TrojanZoo's alpha 0.5).

Deviation (docs/fidelity.md): the N overlays are drawn once from the defender's clean split, in
`fit`, and shared by every input, where the authors draw N fresh ones per input; an input's
score then depends on nothing else in its batch, and clean and triggered inputs meet the same
overlays.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from benchbd.defenses.input_scores import as_floats, zero_shot_logits

from benchbd.api import (
    BenchbdError,
    ClipBundle,
    DefenseContext,
    InputDetector,
    Params,
    param,
    substream,
    zero_shot_weights,
)

BLENDS = ("sum", "mean")


@dataclass(frozen=True)
class STRIPParams(Params):
    overlays: int = param(32, "clean images superimposed on each input (STRIP's N)", min=1)
    blend: str = param(
        "sum",
        "how an overlay is superimposed: sum (the authors' cv2.addWeighted(x, 1, o, 1, 0), "
        "unclipped) or mean (x / 2 + o / 2)",
        choices=BLENDS,
    )  # fmt: skip


def superimpose(inputs: torch.Tensor, overlays: torch.Tensor, blend: str) -> torch.Tensor:
    """(B, 3, H, W) and (N, 3, H, W) floats -> (B * N, 3, H, W): each input with each overlay,
    input-major."""
    blended = inputs[:, None] + overlays[None]
    if blend == "mean":
        blended = blended / 2
    return blended.flatten(0, 1)


def mean_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """(B, N, C) class probabilities -> (B,) the mean over N of the base-2 Shannon entropy,
    0 log 0 taken as 0 (the authors' `nansum`)."""
    terms = probabilities * torch.log2(probabilities)
    return -torch.nan_to_num(terms, nan=0.0).sum(dim=(1, 2)) / probabilities.shape[1]


class STRIP(InputDetector):
    Params = STRIPParams
    description = ("Input detection: superimpose clean images on the input; a low entropy of "
                   "the zero-shot prediction flags a trigger (STRIP).")  # fmt: skip
    test_params = {"overlays": 4}

    def check(self, context: DefenseContext) -> None:
        if len(context.clean) < 1:
            raise BenchbdError("STRIP superimposes clean images: the clean split is empty")

    def fit(self, clip: ClipBundle, context: DefenseContext) -> None:
        generator = torch.Generator().manual_seed(substream(context.seed, "strip-overlays"))
        picks = torch.randint(0, len(context.clean), (self.params.overlays,), generator=generator)
        self.overlays = as_floats(context.clean.images[picks])
        self.weights = zero_shot_weights(clip, context.task)

    def score(self, clip: ClipBundle, images: torch.Tensor,
              context: DefenseContext) -> torch.Tensor:  # fmt: skip
        blended = superimpose(as_floats(images), self.overlays, self.params.blend)
        logits = zero_shot_logits(clip, blended, self.weights)
        probabilities = logits.softmax(dim=-1).double().view(len(images), len(self.overlays), -1)
        return -mean_entropy(probabilities)
