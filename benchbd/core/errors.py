"""The one exception type the CLI turns into a clean one-line message."""

from __future__ import annotations


class BenchbdError(Exception):
    """A user-facing error: bad input, missing data, an impossible request."""
