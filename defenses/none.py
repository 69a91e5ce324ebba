"""The no-defense baseline: the poisoned model, measured twice."""

from __future__ import annotations

from benchbd.api import ClipBundle, Defense, DefenseContext


class NoDefense(Defense):
    description = "No defense: reports the poisoned model as it is."
    baseline = True

    def apply(self, clip: ClipBundle, context: DefenseContext) -> ClipBundle:
        return clip
