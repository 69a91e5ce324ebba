"""What a run reports while it works: the stage it is in, each training step, and notes (a
cached model reused, a damaged one trained again). The CLI draws it; the library stays silent.
Its own module, so that every step of a run (the attack step, the defense's stage) can report
without importing the pipeline that sequences them."""

from __future__ import annotations

from benchbd.engine.step_report import StepReport


class Observer:
    """What the pipeline reports while it works; the CLI draws it, the library stays silent."""

    def stage(self, name: str) -> None: ...

    def step(self, report: StepReport) -> None: ...

    def note(self, message: str) -> None: ...
