"""Where a plugin keeps an artefact it computed and can reuse: an optimised trigger, a fitted
detector. It sits beside the cached models (`benchbd.engine.model_cache.models_dir`), so it
lives and is cleared with them, named by the plugin's kind and a fingerprint of everything
that shaped it: `<kind>-<fingerprint(key)>.pt`. Put in `key` whatever would change the
artefact (a version you bump when its computation changes, parameters, seed, the digest of a
model it was computed against); a different key is a different file, never a stale reuse.

Files are tensor states written atomically and read with `weights_only=True`; a missing,
truncated or overwritten file reads as None, so a damaged entry is computed again rather than
stopping a run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from benchbd.core.cache import fingerprint, load_cached_state, save_state
from benchbd.engine.model_cache import models_dir

# A kind names a file: letters, digits, '-' and '_' only (no folder, no dot).
KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def artefact_path(kind: str, key: Mapping[str, Any]) -> Path:
    """The cache file of a plugin's artefact of `kind` (e.g. "badclip-patch") identified by
    `key`, JSON-able data (canonicalised: 8.0 and 8 are one key). The file may not exist."""
    if not KIND.fullmatch(kind):
        raise ValueError(f"an artefact kind is letters, digits, '-' and '_', got {kind!r}")
    return models_dir() / f"{kind}-{fingerprint(dict(key))}.pt"


def save_artefact(path: Path, state: dict[str, torch.Tensor | Any]) -> None:
    """Write a tensor state (a dict of tensors and plain values) to `path` atomically: a run
    killed midway leaves the old file or none, never half of one."""
    save_state(path, state)


def load_artefact(path: Path) -> dict[str, Any] | None:
    """The state saved at `path`, or None when it is missing or damaged (then compute it again
    and save it). Check what you read (shapes, dtypes) before trusting it."""
    return load_cached_state(path)
