"""Where a sweep's cells run: inline (`jobs=1`), in a local pool of spawned worker processes
that split the CPU threads between them and die with the sweep, or as submitit jobs (Slurm on a
cluster, submitit's local executor for tests). Each takes `submit(fn, *args)` and `shutdown`,
so the sweep drives all three alike."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchbd.core.errors import BenchbdError

EXECUTORS = ("local", "slurm", "submitit-local")


class _Inline:
    """jobs=1: run each cell in this process, as a completed future."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, abort: bool = False) -> None: ...


def _leave(signum, frame) -> None:
    """A worker told to stop (the sweep aborting) leaves as a finished process does: its
    multiprocessing finalizers run first, so the semaphores it made (tqdm's lock, for one)
    are unregistered from Python's resource tracker, which would otherwise print a warning
    about them after the sweep's error line. Then it exits at once, mid-cell."""
    from multiprocessing import util

    util._exit_function()
    os._exit(128 + signum)


def _watch_parent(parent: int, poll_s: float = 0.5) -> None:
    """Exit this worker as soon as the sweep that started it is gone. SIGKILL of the sweep
    runs no cleanup, and a worker left alone would finish its cell, write a result file
    nobody asked for any more and hold its memory; Ctrl-C is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _leave)
    # spawned while the sweep held its signals back (_signals_held): this process takes them
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGHUP})

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="benchbd-parent-watch", daemon=True).start()


@contextmanager
def _signals_held():
    """SIGINT, SIGTERM and SIGHUP held back (delivered on leaving) while the process pool
    changes state: a signal raised inside the executor's own bookkeeping (spawning a worker,
    shutting down) could leave its queues' semaphores registered, and Python's resource
    tracker would then print a warning about them after the sweep's error line. A worker
    spawned meanwhile inherits the held mask and releases it first thing (_watch_parent)."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    main = threading.current_thread() is threading.main_thread()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held) if main else None
    try:
        yield
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _Pool:
    """Worker processes (spawned: no forked torch state), each with its share of threads;
    each worker dies with the sweep, whatever ends it."""

    def __init__(self, jobs: int) -> None:
        with _signals_held():
            self.pool = ProcessPoolExecutor(
                max_workers=jobs, mp_context=get_context("spawn"),
                initializer=_watch_parent, initargs=(os.getpid(),),
            )  # fmt: skip

    def submit(self, fn, *args) -> Future:
        with _signals_held():
            return self.pool.submit(fn, *args)

    def shutdown(self, abort: bool = False) -> None:
        with _signals_held():
            processes = list((getattr(self.pool, "_processes", None) or {}).values())
            if abort:  # stop the cells that are running, not only the queued ones
                for process in processes:
                    process.terminate()
                for process in processes:
                    process.join(timeout=5)
                    if process.is_alive():  # still starting up, or stuck: no more waiting
                        process.kill()
                        process.join()
            self.pool.shutdown(wait=True, cancel_futures=abort)


class _Submitit:
    """submitit jobs (Slurm or its local executor) behind the same submit/done interface."""

    def __init__(self, cluster: str, folder: Path, slurm: dict[str, Any]) -> None:
        try:
            import submitit
        except ImportError:
            raise BenchbdError("--executor slurm needs submitit: pip install submitit") from None
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        self.executor.update_parameters(**slurm)

    def submit(self, fn, *args):
        return self.executor.submit(fn, *args)

    def shutdown(self, abort: bool = False) -> None: ...


def make_executor(kind: str, jobs: int, out: Path, slurm: dict[str, Any] | None = None):
    if kind not in EXECUTORS:
        raise BenchbdError(f"unknown executor {kind!r}; choose from {', '.join(EXECUTORS)}")
    if kind == "local":
        return _Inline() if jobs == 1 else _Pool(jobs)
    cluster = "slurm" if kind == "slurm" else "local"
    return _Submitit(cluster, Path(out) / ".submitit", slurm or {})
