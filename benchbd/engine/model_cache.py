"""The cache of trained models: poisoned models and attackers' surrogates, keyed by fingerprint.

A poisoned model is the expensive part of a run, and many runs share one (every defense against
the same attack), so it is trained once and kept as `<fingerprint>.pt` under the cache's
`models/` folder. Beside it, `<fingerprint>.json` records what a run needs besides the weights:
the rows the attack poisoned (so the attack is not run again, and an optimising attack spends
minutes on it), the CPU threads and kernel level it was trained with (an exact rerun needs
them), and the checkpoint's sha256 (so a damaged entry is trained again, never loaded). A
checkpoint without a usable record counts as absent.

The interface is small: `lookup` (load a usable entry into a model), `has` (would `lookup`
find one, without loading it), `store`, and `describe` (the record alone).

A screen or pretraining defense trains its own model on the poisoned pairs (on the rows kept,
or under the defense); it is cached the same way under its own fingerprint, and a screened
model's record also keeps the rows the screen dropped. Models that are not trained on the
poisoned pairs (an attacker's surrogate, a defender's model of the clean split) need no record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchbd.core.cache import (
    atomic_write_text,
    cache_dir,
    file_digest,
    fingerprint,
    load_cached_state,
    remove_stale_temporaries,
    save_state,
)
from benchbd.engine.model import ClipBundle

MODEL_CACHE_VERSION = 3  # bump when the harness changes what a cached model would contain
UNRECORDED = "unrecorded"  # the kernel level of a record written before levels were kept


@dataclass(frozen=True)
class PoisonedModelRecord:
    """What a cached poisoned model was trained on and with, beside its checkpoint."""

    poison_indices: list[int]
    threads: int
    kernels: str = UNRECORDED
    sha256: str | None = None  # None in records written before digests were kept
    dropped: list[int] | None = None  # the rows a screen dropped before training it

    def to_json(self) -> str:
        record = {"poison_indices": self.poison_indices, "threads": self.threads,
                  "kernels": self.kernels, "sha256": self.sha256}  # fmt: skip
        if self.dropped is not None:  # only for a screened model: other records stay as they were
            record["dropped"] = self.dropped
        return json.dumps(record) + "\n"


@dataclass(frozen=True)
class Lookup:
    """A cache lookup: whether the model is now loaded (with its record, for a poisoned
    model), or, when an entry was there but cannot be used, why (a note for the user; the
    model is then trained again)."""

    found: bool
    record: PoisonedModelRecord | None = None
    why_not: str | None = None


def models_dir() -> Path:
    return cache_dir() / "models"


def checkpoint_path(model_fp: str) -> Path:
    """Where the poisoned model with this fingerprint is kept (its record sits beside it)."""
    return models_dir() / f"{model_fp}.pt"


def _record_path(model_fp: str) -> Path:
    return checkpoint_path(model_fp).with_suffix(".json")


def remove_stale() -> None:
    """Remove the temporary files of writers that were killed mid-write."""
    remove_stale_temporaries(models_dir())


def describe(model_fp: str) -> PoisonedModelRecord | None:
    """The record of the cached poisoned model `model_fp`; None when there is no usable entry:
    no checkpoint, no readable record of it, or a checkpoint whose content is not the one the
    record describes (truncated or overwritten)."""
    checkpoint, path = checkpoint_path(model_fp), _record_path(model_fp)
    if not checkpoint.is_file() or not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        usable = isinstance(raw.get("poison_indices"), list) and "threads" in raw
        if usable and raw.get("sha256") in (None, file_digest(checkpoint)):
            kernels = raw.get("kernels", UNRECORDED)
            return PoisonedModelRecord(raw["poison_indices"], raw["threads"], kernels,
                                       raw.get("sha256"), raw.get("dropped"))  # fmt: skip
    except (OSError, ValueError, AttributeError):
        pass
    return None  # unreadable or damaged: trained again and overwritten


def has(model_fp: str, level: str) -> bool:
    """Whether a run at kernel level `level` would reuse the cached model `model_fp`: a model
    trained with native kernels inside a portable run would make its numbers unportable."""
    record = describe(model_fp)
    return record is not None and record.kernels == level


def lookup(model_fp: str, level: str, clip: ClipBundle) -> Lookup:
    """Load the cached poisoned model `model_fp` into `clip` if a run at `level` may reuse it."""
    record = describe(model_fp)
    if record is not None and record.kernels != level:
        return Lookup(False, why_not=f"cached poisoned model {model_fp} was trained with "
                                     f"{record.kernels} kernels and this run uses {level}: "
                                     "training it again")  # fmt: skip
    checkpoint = checkpoint_path(model_fp)
    if record is not None and _restore(clip, load_cached_state(checkpoint)):
        return Lookup(True, record)
    if record is not None or checkpoint.exists():
        return Lookup(False, why_not=f"cached poisoned model {model_fp} is damaged or "
                                     "incomplete; training it again")  # fmt: skip
    return Lookup(False)


def store(model_fp: str, clip: ClipBundle, indices: list[int], threads: int, level: str,
          dropped: list[int] | None = None) -> None:  # fmt: skip
    """Keep `clip` as the poisoned model `model_fp`, with its record (written second, so a
    checkpoint is never described before it is whole); `dropped` for a screened model."""
    checkpoint = checkpoint_path(model_fp)
    save_state(checkpoint, clip.model.state_dict())
    record = PoisonedModelRecord(indices, threads, level, file_digest(checkpoint), dropped)
    atomic_write_text(_record_path(model_fp), record.to_json())


def surrogate_fingerprint(key: dict[str, Any]) -> str:
    """A surrogate's fingerprint: `key` (what shaped it) under this cache's version."""
    return fingerprint({"version": MODEL_CACHE_VERSION, **key})


def _surrogate_path(surrogate_fp: str, kind: str = "surrogate") -> Path:
    return models_dir() / f"{kind}-{surrogate_fp}.pt"


def lookup_surrogate(surrogate_fp: str, clip: ClipBundle, kind: str = "surrogate") -> Lookup:
    """Load the cached surrogate into `clip`; a surrogate needs no record (an attack's clean
    model: nothing but its weights is reused). `kind` names other such models in the file
    name (`clean`: a defender's model of the clean split)."""
    path = _surrogate_path(surrogate_fp, kind)
    if _restore(clip, load_cached_state(path)):
        return Lookup(True)
    if path.exists():
        return Lookup(False, why_not=f"cached {kind} model {kind}-{surrogate_fp} is "
                                     "damaged; training it again")  # fmt: skip
    return Lookup(False)


def store_surrogate(surrogate_fp: str, clip: ClipBundle, kind: str = "surrogate") -> None:
    save_state(_surrogate_path(surrogate_fp, kind), clip.model.state_dict())


def _restore(clip: ClipBundle, state: dict | None) -> bool:
    """Load a cached state into `clip`; False (and `clip` untouched in effect, since it is then
    trained from its seeded start) when the state is missing or does not fit the model."""
    if state is None:
        return False
    expected = clip.model.state_dict()
    fits = state.keys() == expected.keys() and all(
        isinstance(state[k], torch.Tensor) and state[k].shape == v.shape
        for k, v in expected.items()
    )
    if not fits:  # checked first: a failed load_state_dict may leave some tensors copied
        return False
    clip.model.load_state_dict(state)
    clip.model.eval()
    return True
