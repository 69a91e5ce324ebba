"""What the built-in input detectors share: the zero-shot classifier on images given as floats.

STRIP and SCALE-UP transform an input (superimpose another image, scale its pixels) before the
model sees it, so they need the zero-shot prediction of float images in [0, 1] (or above, for
STRIP's unclipped sum), not of uint8 ones: `zero_shot_logits` is `predict`'s computation
(pixel normalisation, image tower, L2-normalised features against the class embeddings of
`zero_shot_weights`) on floats, scaled by the model's learned temperature so that a softmax
gives CLIP's class probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchbd.api import ClipBundle

CHUNK = 512  # images per forward pass


def as_floats(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> floats in [0, 1]."""
    return images.float() / 255.0


@torch.no_grad()
def image_features(clip: ClipBundle, floats: torch.Tensor) -> torch.Tensor:
    """L2-normalised image features (N, D), on the CPU, of float images (N, 3, H, W)."""
    device = next(clip.model.parameters()).device
    chunks = []
    for first in range(0, len(floats), CHUNK):
        batch = clip.normalize_float(floats[first : first + CHUNK].to(device))
        chunks.append(F.normalize(clip.model.encode_image(batch).float(), dim=-1).cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def logit_scale(clip: ClipBundle) -> float:
    """CLIP's learned temperature, exp(logit_scale), as its softmax over classes uses it."""
    scale = getattr(clip.model, "logit_scale", None)
    return 1.0 if scale is None else float(scale.detach().exp().cpu())


def zero_shot_logits(clip: ClipBundle, floats: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N, C) zero-shot logits of float images: temperature times cosine similarity."""
    return logit_scale(clip) * image_features(clip, floats) @ weights.cpu()
