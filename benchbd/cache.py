"""Where benchbd keeps what it can reuse, and how it writes files so a crash never corrupts one."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchbd.errors import BenchbdError

if TYPE_CHECKING:
    import torch


def cache_dir() -> Path:
    """$BENCHBD_CACHE, else ~/.cache/benchbd."""
    root = os.environ.get("BENCHBD_CACHE") or Path.home() / ".cache" / "benchbd"
    return Path(root)


def fingerprint(data: Any) -> str:
    """A stable hash of JSON-able data: the identity of everything that shaped an artefact."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def writable_folder(path: Path, what: str = "--out") -> Path:
    """Make sure results can be written into `path` (created if missing) before any work is
    done, so a run never trains for minutes and then loses its result to a bad folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BenchbdError(f"{what} {str(path)!r} is not a folder; give a folder for results")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".benchbd-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BenchbdError(f"{what} {str(path)!r} cannot be written to ({reason}); "
                           "choose another folder") from None  # fmt: skip
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers see old or new, never half."""
    _atomic(Path(path), lambda handle: handle.write(text.encode()))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic(Path(path), lambda handle: handle.write(data))


def save_state(path: Path, state: dict[str, torch.Tensor]) -> None:
    import torch

    _atomic(Path(path), lambda handle: torch.save(state, handle))


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """Checkpoints are loaded with weights_only=True: a tensor file can never run code."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
