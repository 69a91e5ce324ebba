"""Claims on shared work (benchbd.engine.locks): held while the owner lives, taken over once it is
gone, whether it ended on this host or stopped refreshing its lock from another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from benchbd.engine.locks import STALE_AFTER_S, Locks, read_owner


def write_lock(path, host: str, pid: int, started: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "started": started, "what": "cell"}))


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def test_a_lock_is_exclusive_and_records_its_owner(tmp_path):
    path = tmp_path / "locks" / "a.lock"
    mine = Locks()
    assert mine.acquire(path, "cell a") is None
    owner, _ = read_owner(path)
    assert owner.pid == os.getpid() and owner.what == "cell a" and owner.started
    assert mine.acquire(path, "cell b").what == "cell a"  # this process's own claim holds
    mine.release_all()
    assert not path.exists()


def test_a_live_owner_keeps_its_lock_and_a_gone_one_loses_it(tmp_path):
    import socket

    here = socket.gethostname()
    path = tmp_path / "x.lock"
    write_lock(path, here, os.getppid())  # alive: the process that started the tests
    assert Locks().acquire(path, "mine").pid == os.getppid()
    write_lock(path, here, dead_pid())
    locks = Locks()
    assert locks.acquire(path, "mine") is None
    assert read_owner(path)[0].pid == os.getpid()
    locks.release_all()
    # a pid reused by another process: its start time tells it from the owner
    write_lock(path, here, os.getppid(), started="1")
    assert Locks().acquire(path, "mine") is None


def test_another_hosts_lock_is_stale_once_it_stops_being_refreshed(tmp_path):
    path = tmp_path / "y.lock"
    write_lock(path, "some-other-node", 1)
    assert Locks().acquire(path, "mine").host == "some-other-node"
    old = time.time() - STALE_AFTER_S - 5
    os.utime(path, (old, old))
    assert Locks().acquire(path, "mine") is None
