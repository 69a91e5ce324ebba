"""Named random streams: every generator in a run is seeded by `substream(seed, name)`.

Why names and not arithmetic: a seed derived as `seed + 1` or `seed * k + i` ties streams
together (run seed 1's first stream is run seed 0's second; two offsets can collide), and a
new stream has to pick an offset no other stream uses. A hash of the stream's name gives
each stream an independent seed, so adding a stream never shifts another and no two names
share one. This module imports nothing from benchbd, so any module (the engine, a plugin, a
benchmark script) can use it without pulling in the pipeline.
"""

from __future__ import annotations

import hashlib


def substream(seed: int, name: str) -> int:
    """An independent seed per random stream (poisons, init, batches, triggers, defense).

    The first 4 bytes (little-endian) of sha256 of `"{seed}:{name}"`: a value in [0, 2**32)
    that every `torch.Generator` and NumPy generator accepts, the same on every machine and
    Python version (unlike `hash()`, which is salted per process)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little")
