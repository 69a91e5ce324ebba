"""Did-you-mean hints for names a user mistyped (plugins, classes, datasets, models)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A sentence fragment naming the closest choices, or listing all of them when none is close."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "; choose from " + ", ".join(options) if options else ""
