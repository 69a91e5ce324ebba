"""Claims on shared work: a cell or a poisoned model that one process is making.

Two sweeps on one results folder and cache (two array tasks of a cluster job, two shells) must
not both make the same thing. Before it makes a cell's result or trains a poisoned model, a
sweep takes a lock file: created exclusively (`O_CREAT | O_EXCL`, atomic on local disks and on
NFS v3 and later), holding its owner (host, pid, the process's start time, the thing claimed)
as JSON, and touched every HEARTBEAT_S seconds while held. Another process that finds it waits
for that work or takes other work. A lock is stale, and is taken over, when its owner is gone:
on the same host, when no process has its pid and start time (a reused pid does not count); on
another host, whose processes cannot be seen, when it has not been touched for STALE_AFTER_S.
Taking over renames the stale file away first, so of two processes that both find it stale
only one wins. A lock never guards correctness (every file is written atomically, and work
done twice gives the same bytes); it only keeps work from being done twice.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HEARTBEAT_S = 30.0
# A lock from another host not touched for this long is stale: ten missed heartbeats.
STALE_AFTER_S = 10 * HEARTBEAT_S


def _start_time(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot, /proc); None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:  # a zombie has exited: its work is over
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass(frozen=True)
class Owner:
    """Who holds a lock, and what for."""

    host: str
    pid: int
    started: str | None  # the process's start time: tells a reused pid from the owner
    what: str

    @classmethod
    def me(cls, what: str) -> Owner:
        return cls(socket.gethostname(), os.getpid(), _start_time(os.getpid()), what)

    def gone(self, touched: float) -> bool:
        """Whether the owner no longer holds the lock: its process has ended (this host), or
        the lock has gone unrefreshed for STALE_AFTER_S (another host)."""
        if self.host != socket.gethostname():
            return time.time() - touched > STALE_AFTER_S
        if not _alive(self.pid):
            return True
        started = _start_time(self.pid)
        return self.started is not None and started is not None and started != self.started

    def describe(self) -> str:
        return f"{self.what} (process {self.pid} on {self.host})"


def read_owner(path: Path) -> tuple[Owner, float] | None:
    """The lock's owner and when it was last touched; None when there is no lock."""
    try:
        raw = json.loads(path.read_text())
        touched = path.stat().st_mtime
        return Owner(str(raw["host"]), int(raw["pid"]), raw.get("started"),
                     str(raw.get("what", ""))), touched  # fmt: skip
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # Half-written by an owner killed between create and write, or damaged: stale once
        # it has not been touched for a heartbeat (a live owner writes it at once).
        try:
            touched = path.stat().st_mtime
        except FileNotFoundError:
            return None
        return Owner("", -1, None, "unreadable lock"), touched


class Locks:
    """The locks this process holds, touched by one heartbeat thread while any is held."""

    def __init__(self) -> None:
        self.held: dict[Path, str] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, path: Path, what: str) -> Owner | None:
        """Take the lock at `path` for `what`: None when taken; else its live owner (this
        process's own claim too, for other work). A stale lock is taken over."""
        path = Path(path)
        with self._guard:
            if path in self.held:
                return Owner.me(self.held[path])
        for _ in range(3):  # a stale lock taken over, or a race lost, is tried again
            owner = Owner.me(what)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                found = read_owner(path)
                if found is None:
                    continue  # released meanwhile
                holder, touched = found
                unreadable = holder.pid == -1
                if (unreadable and time.time() - touched < HEARTBEAT_S) or (
                    not unreadable and not holder.gone(touched)
                ):
                    return holder
                self._take_over(path)
                continue
            with os.fdopen(fd, "w") as file:
                json.dump(asdict(owner), file)
            with self._guard:
                self.held[path] = what
            self._beat()
            return None
        found = read_owner(path)
        return found[0] if found else Owner.me(what)

    @staticmethod
    def _take_over(path: Path) -> None:
        """Move a stale lock aside (only one of several contenders can) and remove it."""
        aside = path.with_name(f".{path.name}.{os.getpid()}.{time.time_ns()}.stale")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        aside.unlink(missing_ok=True)

    def release(self, path: Path) -> None:
        path = Path(path)
        with self._guard:
            if self.held.pop(path, None) is None:
                return
        path.unlink(missing_ok=True)

    def release_all(self) -> None:
        for path in list(self.held):
            self.release(path)
        self._stop.set()

    def _beat(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="benchbd-locks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with self._guard:
                paths = list(self.held)
            for path in paths:
                try:
                    os.utime(path)
                except OSError:  # removed by someone who judged it stale: nothing to keep
                    pass
