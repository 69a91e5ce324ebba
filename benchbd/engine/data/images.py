"""Images that live on disk and are decoded only when a batch needs them.

Real image-caption sets do not fit in memory, but attacks, trainers and metrics all speak uint8
tensors (N, 3, H, W). `LazyImages` bridges the two: it answers the tensor questions a `PairSet`
asks (shape, dtype, indexing) and decodes rows on demand, while the few rows an attack changes
are kept in memory as an overlay. Poisoning 1,500 of 3 million pairs therefore decodes 1,500
images, and training reads every other row from disk through a DataLoader with workers.
"""

from __future__ import annotations

import ctypes
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from benchbd.core.errors import BenchbdError
from benchbd.engine.data.pairs import PairSet


class ImageError(BenchbdError):
    """An image that exists but cannot be decoded."""


def decode(source: str | Path | bytes, size: int, name: str) -> torch.Tensor:
    """File path or encoded bytes -> uint8 (3, size, size), resized and cropped as open_clip's
    preprocessing does (shortest side to `size`, bicubic, centre crop).

    JPEGs are decoded at the smallest DCT scale that is still at least `size` (PIL's draft
    mode), which makes 224 px decoding of large photos several times faster."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.draft("RGB", (size, size))
            image = image.convert("RGB")
            w, h = image.size
            scale = size / min(w, h)
            new = (max(size, round(w * scale)), max(size, round(h * scale)))
            if new != (w, h):
                image = image.resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0)
            left, top = (new[0] - size) // 2, (new[1] - size) // 2
            if (left, top) != (0, 0) or new != (size, size):
                image = image.crop((left, top, left + size, top + size))
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"unreadable image {name}: {reason}") from None
    # HWC -> CHW with numpy: a third of the decode time less than torch's strided uint8 copy
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


class ImageReader(Protocol):
    """Where a source's images come from: row i -> uint8 (3, size, size). A reader may also
    offer `read_many(rows, size)`, a batch at once (images held in memory)."""

    def read(self, row: int, size: int) -> torch.Tensor: ...


def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Give freed heap memory back to the system (glibc). Batches of a few MB freed and
    reallocated in turn raise glibc's mmap threshold and then fragment its heap, so without
    this a 50,000-image pass creeps up by about 2 KB per image although nothing is kept."""
    if _TRIM is not None:
        _TRIM(0)


def loader_workers() -> int:
    """DataLoader workers for decoding: $BENCHBD_WORKERS, else up to 8 (one per core)."""
    value = os.environ.get("BENCHBD_WORKERS")
    if value is not None:
        if not value.isdigit():
            raise BenchbdError(f"BENCHBD_WORKERS must be a whole number, got {value!r}")
        return int(value)
    return min(8, os.cpu_count() or 1)


def _positions(index, n: int) -> list[int]:
    """Any tensor-style index (int, slice, list, long or bool tensor) -> row positions."""
    if isinstance(index, slice):
        return list(range(n))[index]
    if isinstance(index, torch.Tensor):
        if index.dtype == torch.bool:
            return torch.nonzero(index).flatten().tolist()
        return index.flatten().tolist()
    if isinstance(index, np.ndarray):
        return _positions(torch.from_numpy(index), n)
    if isinstance(index, Iterable):
        return [int(i) for i in index]
    raise TypeError(f"cannot index images with {type(index).__name__}")


@dataclass
class LazyImages:
    """Quacks like a uint8 (N, 3, size, size) tensor; decodes rows only when indexed."""

    reader: ImageReader
    rows: np.ndarray  # row of the reader for each position
    size: int
    overlay: dict[int, torch.Tensor] = field(default_factory=dict)  # position -> changed image

    dtype = torch.uint8
    ndim = 4

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), 3, self.size, self.size))

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, position: int) -> torch.Tensor:
        if position in self.overlay:
            return self.overlay[position]
        return self.reader.read(int(self.rows[position]), self.size)

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, int):
            return self.read(index if index >= 0 else len(self) + index)
        positions = _positions(index, len(self))
        if not positions:
            return torch.empty((0, 3, self.size, self.size), dtype=torch.uint8)
        read_many = getattr(self.reader, "read_many", None)
        if read_many is None:
            return torch.stack([self.read(p) for p in positions])
        batch = read_many(self.rows[positions], self.size)  # one call for the whole batch
        for i, position in enumerate(positions):
            if position in self.overlay:
                batch[i] = self.overlay[position]
        return batch

    def __setitem__(self, index, values: torch.Tensor) -> None:
        positions = [index] if isinstance(index, int) else _positions(index, len(self))
        values = values.reshape(len(positions), 3, self.size, self.size)
        for position, value in zip(positions, values, strict=True):
            self.overlay[position] = value.to(torch.uint8).clone()

    def clone(self) -> LazyImages:
        return LazyImages(self.reader, self.rows, self.size, dict(self.overlay))

    def select(self, positions: Sequence[int]) -> LazyImages:
        """A lazy view of some positions, changed rows included."""
        positions = list(positions)
        overlay = {
            new: self.overlay[old] for new, old in enumerate(positions) if old in self.overlay
        }
        return LazyImages(self.reader, self.rows[positions], self.size, overlay)


@dataclass(frozen=True)
class StreamedPairSet(PairSet):
    """A PairSet whose images are `LazyImages`: subsets stay lazy instead of decoding."""

    def subset(self, indices: torch.Tensor | list[int]) -> StreamedPairSet:
        index = torch.as_tensor(indices, dtype=torch.long).flatten().tolist()
        return StreamedPairSet(
            images=self.images.select(index),
            captions=[self.captions[i] for i in index],
            labels=self.labels[torch.as_tensor(index, dtype=torch.long)],
        )


def is_streamed(pairs: PairSet) -> bool:
    return isinstance(pairs.images, LazyImages)


class _Rows(torch.utils.data.Dataset):
    """DataLoader view of LazyImages. A decode error travels back as text, so that the main
    process raises it as a one-line BenchbdError rather than a worker traceback."""

    def __init__(self, images: LazyImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, position: int):
        try:
            return self.images.read(position), position, ""
        except BenchbdError as exc:
            return None, position, str(exc)


def _collate(items):
    """Stack a batch; in a worker, torch's default_collate stacks straight into shared
    memory, saving the copy that sending the batch to the main process would make."""
    errors = [error for _, _, error in items if error]
    positions = [p for _, p, _ in items]
    if errors:
        return None, positions, errors
    return torch.utils.data.default_collate([image for image, _, _ in items]), positions, []


def batches_of(count: int, size: int) -> list[list[int]]:
    """Positions 0..count-1 in consecutive batches of `size` (the last may be shorter): how
    every reader of a set on disk walks it, so that batch k is the same batch everywhere."""
    return [list(range(i, min(i + size, count))) for i in range(0, count, size)]


def stream(
    images: LazyImages, batches: Iterable[list[int]], workers: int | None = None
) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """Decode the given batches of positions in worker processes, in order."""
    workers = loader_workers() if workers is None else workers
    loader = torch.utils.data.DataLoader(
        _Rows(images),
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=4 if workers else None,
    )
    for batch, positions, errors in loader:
        if errors:
            raise ImageError(errors[0])
        yield batch, positions
