"""Progress for logs: plain lines at a steady interval when stderr is not a terminal.

A rich progress bar redraws one line in place; in a Slurm log, under `nohup` or in CI it shows
nothing until the stage ends, so a four-minute run redirected to a file looked dead. Where
stderr is not a terminal, `run` and `sweep` print instead, at most every `BENCHBD_LOG_INTERVAL`
seconds (default 30) and at the first and last step of each training stage, one line with the
stage, step, loss, pairs/s and the time left, which `grep` and `tail -f` read as they are.
"""

from __future__ import annotations

import os
import time

from rich.console import Console

from benchbd.core.errors import BenchbdError
from benchbd.engine.observer import Observer
from benchbd.engine.step_report import StepReport
from benchbd.engine.sweep import CellOutcome, SweepObserver


def auroc_text(metrics: dict) -> str:
    """A screen's detection AUROC for a finished cell's line; nothing for other defenses."""
    if "auroc" not in metrics:
        return ""
    value = metrics["auroc"]
    return f"  AUROC {'-' if value is None else format(value, '.3f')}"


DEFAULT_INTERVAL_S = 30.0


def log_interval() -> float:
    """Seconds between progress lines, from $BENCHBD_LOG_INTERVAL (0: every step)."""
    text = os.environ.get("BENCHBD_LOG_INTERVAL", "")
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise BenchbdError(f"BENCHBD_LOG_INTERVAL must be a number of seconds >= 0, got {text!r}")
    return value


def clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class PlainObserver(Observer):
    """One line per stage and per interval; the first and last step of a stage always print."""

    def __init__(self, console: Console, interval: float | None = None) -> None:
        self.console = console
        self.interval = log_interval() if interval is None else interval
        self.last_print = float("-inf")
        self.stage_start: dict[str, float] = {}

    def __enter__(self) -> PlainObserver:
        return self

    def __exit__(self, *exc) -> None: ...

    def line(self, text: str) -> None:
        self.console.print(f"benchbd: {text}", markup=False, highlight=False, soft_wrap=True)

    def stage(self, name: str) -> None:
        """Silent: step lines name their stage, and an error found before any training must
        stay the only line the run prints."""

    def step(self, report: StepReport) -> None:
        now = time.monotonic()
        start = self.stage_start.setdefault(report.stage, now)
        edge = report.step in (1, report.total)
        if not edge and now - self.last_print < self.interval:
            return
        self.last_print = now
        done = max(report.step, 1)
        left = (now - start) / done * (report.total - report.step)
        self.line(f"{report.stage} step {report.step}/{report.total} loss {report.loss:.3f} "
                  f"{report.pairs_per_s:.0f} pairs/s elapsed {clock(now - start)} "
                  f"left {clock(left)}")  # fmt: skip

    def note(self, message: str) -> None:
        self.line(message)


class PlainSweepObserver(SweepObserver):
    """A sweep in a log: a line per cell started and finished, and a status line (cells done,
    running, failed, time left) at most every interval while cells run."""

    def __init__(self, console: Console, interval: float | None = None) -> None:
        self.log = PlainObserver(console, interval)
        self.done = self.running = self.failed = 0
        self.total = 0
        self.start_time = time.monotonic()
        self.last_status = time.monotonic()

    def __enter__(self) -> PlainSweepObserver:
        return self

    def __exit__(self, *exc) -> None: ...

    def start(self, total: int, skipped: int) -> None:
        self.total = total - skipped
        self.start_time = self.last_status = time.monotonic()
        self.log.line(f"sweep: {total} cells, {skipped} already have results, {self.total} to run")

    def cell_started(self, name: str) -> None:
        self.running += 1
        self.log.line(f"started {name}")

    def cell_finished(self, outcome: CellOutcome) -> None:
        self.running -= 1
        self.done += 1
        if outcome.status == "failed":
            self.failed += 1
            self.log.line(f"failed  {outcome.name}: {outcome.error}")
        else:
            m = outcome.metrics
            asr = "-" if m["asr"] is None else format(m["asr"], ".3f")
            self.log.line(f"done    {outcome.name}: CA {m['ca']:.3f}  ASR {asr}"
                          f"{auroc_text(m)}  ({outcome.seconds:.0f} s)")  # fmt: skip

    def cell_waiting(self, name: str, holder: str) -> None:
        self.log.line(f"waiting {name}: held by {holder}")

    def cell_elsewhere(self, name: str, how: str) -> None:
        self.total -= 1  # not this sweep's to run any more
        self.log.line(f"skipped {name}: {how}")

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.last_status < self.log.interval:
            return
        self.last_status = now
        elapsed = now - self.start_time
        left = elapsed / self.done * (self.total - self.done) if self.done else None
        self.log.line(f"sweep: {self.done}/{self.total} cells done, {self.running} running, "
                      f"{self.failed} failed, elapsed {clock(elapsed)}, left "
                      f"{'unknown' if left is None else clock(left)}")  # fmt: skip
