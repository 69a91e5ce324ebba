"""Where benchbd keeps what it can reuse, and how it writes files so a crash never corrupts one."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchbd.core.errors import BenchbdError

if TYPE_CHECKING:
    import torch


TEMP_MARK = "pid"


def cache_dir() -> Path:
    """$BENCHBD_CACHE, else ~/.cache/benchbd."""
    root = os.environ.get("BENCHBD_CACHE") or Path.home() / ".cache" / "benchbd"
    return Path(root)


def canonical(value: Any) -> Any:
    """Numbers compared by value: a whole float becomes an int (8.0 and 8, as a TOML grid and
    the CLI write an epoch count, are one setting), recursively; booleans stay booleans."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def fingerprint(data: Any) -> str:
    """A stable hash of JSON-able data: the identity of everything that shaped an artefact.
    The data is canonicalised first, so equal settings written differently hash alike."""
    text = json.dumps(canonical(data), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def code_fingerprint(path: Path) -> str:
    """A hash of a Python module's code alone: docstrings and comments left out, so that prose
    can be corrected without touching a data set's identity, while any change to what the
    code does changes the hash. `tests/test_data_versions.py` compares it with the value
    recorded beside each generator's version."""
    import ast

    tree = ast.parse(Path(path).read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):  # fmt: skip
            node.body = body[1:] or [ast.Pass()]
    return fingerprint(ast.dump(tree, include_attributes=False))


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


def temporary_prefix(name: str) -> str:
    """Temporary files carry their writer's pid, so a later command can tell one left behind
    by a killed process (SIGKILL runs no cleanup) from one being written right now."""
    return f".{name}.{TEMP_MARK}{os.getpid()}."


def _writer_pid(name: str) -> int | None:
    match = re.search(rf"\.{TEMP_MARK}(\d+)\.", name)
    return int(match.group(1)) if match else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files and folders in `folder` whose writer has died; the ones
    still being written are left alone. Returns what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.glob(f".*.{TEMP_MARK}*.tmp"):
        pid = _writer_pid(path.name)
        if pid is None or _alive(pid):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path.name), suffix=".tmp")
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


def file_digest(path: Path) -> str:
    """sha256 of a file, streamed: how a cache entry's record recognises its own checkpoint."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    """A file's content in a fingerprint (a CSV listing, a labels table, a checkpoint passed as
    pretrained weights): the first 16 hex digits of its sha256."""
    return file_digest(path)[:16]


def load_cached_state(path: Path) -> dict[str, torch.Tensor] | None:
    """A cached checkpoint, or None when it is missing or damaged (truncated, overwritten,
    not a tensor file): a damaged cache entry is rebuilt, never a reason to stop."""
    if not Path(path).is_file():
        return None
    try:
        state = load_state(path)
    except Exception:  # torch raises many types for a damaged file; all mean "rebuild it"
        return None
    return state if isinstance(state, dict) else None
