"""Turn every expected failure into one line on stderr and a non-zero exit code."""

from __future__ import annotations

import functools
import os
import sys

import typer

from benchbd.errors import BenchbdError
from benchbd.registry import PluginError

EXPECTED = (BenchbdError, PluginError, ValueError, OSError, FloatingPointError)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"benchbd: error: {message}", err=True)
    raise typer.Exit(code)


def friendly_errors(command):
    """Commands raise; users read one line. BENCHBD_DEBUG=1 shows the traceback instead."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        if os.environ.get("BENCHBD_DEBUG"):
            return command(*args, **kwargs)
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            fail("interrupted; no result file was written", code=130)
        except EXPECTED as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except Exception as exc:  # a bug: still one line, with the way to see more
            typer.echo(
                f"benchbd: internal error: {type(exc).__name__}: {exc} "
                "(set BENCHBD_DEBUG=1 for the traceback)",
                err=True,
            )
            sys.stderr.flush()
            raise typer.Exit(1) from None

    return wrapper
