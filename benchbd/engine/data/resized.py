"""The embedded data at any model resolution, in bounded memory.

The synthetic generator draws its images at its native 32 px. A model that takes another size
(open_clip's RN50 and ViT-B-32 take 224 px) gets the same images resized as batches are drawn,
never a whole split at its size: 20,000 pretraining pairs are 61 MB at 32 px and 3 GB at
224 px, and the clean, test and validation splits would add another 1.4 GB. The splits are
`StreamedPairSet`s over `LazyImages` (benchbd.engine.data.images), the contract real data already
streams through, so attacks see images at the model's size (a trigger is drawn at 224 px), the
rows an attack changes are kept as an overlay, and training and evaluation draw their batches
through the same loaders as for files on disk.

The resize is open_clip's preprocessing kind (bicubic), computed with torch on CPU from the
uint8 image, rounded: a pure function of the stored bytes, the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchbd.engine.data.images import LazyImages, StreamedPairSet
from benchbd.engine.data.pairs import PairSet

# What a dataset key records for data resized from the native size, so that a model trained
# on it is never confused with one trained on data drawn at that size.
RESIZE = "bicubic-from-native"


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 3, s, s) -> uint8 (N, 3, size, size): bicubic, antialiased when shrinking."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    scaled = torch.nn.functional.interpolate(
        images.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True
    )
    return scaled.round_().clamp_(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class ResizingReader:
    """A split's native images in memory; a row is resized when it is read."""

    images: torch.Tensor  # uint8 (N, 3, native, native)

    def read(self, row: int, size: int) -> torch.Tensor:
        return resize(self.images[row : row + 1], size)[0]

    def read_many(self, rows: np.ndarray, size: int) -> torch.Tensor:
        return resize(self.images[torch.as_tensor(rows, dtype=torch.long)], size)


def at_size(pairs: PairSet, size: int) -> PairSet:
    """`pairs` as seen by a model taking `size` px images: the pairs themselves at their own
    size (bytes unchanged), else a streamed view resized row by row."""
    if pairs.images.shape[-1] == size:
        return pairs
    images = LazyImages(ResizingReader(pairs.images), np.arange(len(pairs)), size)
    return StreamedPairSet(images=images, captions=pairs.captions, labels=pairs.labels)
