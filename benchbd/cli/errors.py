"""Turn every expected failure into one line on stderr and a non-zero exit code.

Also where a command's process meets the outside world: SIGTERM and SIGHUP end a command the
way Ctrl-C does (cleanup runs, nothing half-written stays), and the library's notes (the
`benchbd` logger) reach stderr as `benchbd: note: ...` lines.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys

import typer

from benchbd.core.errors import BenchbdError
from benchbd.core.registry import PluginError

EXPECTED = (BenchbdError, PluginError, ValueError, OSError, FloatingPointError)


class Terminated(BaseException):
    """SIGTERM or SIGHUP: unwinds like KeyboardInterrupt, so `finally` blocks and temporary
    files are cleaned up, and sweeps stop their workers."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate(signum, frame) -> None:
    raise Terminated(signum)


class _NoteHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        typer.echo(f"benchbd: note: {record.getMessage()}", err=True)


def install_process_handlers() -> None:
    """Signals and notes, once per process (the main thread only: Python allows no other)."""
    import threading

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) is not signal.SIG_IGN:  # `nohup` ignores SIGHUP: keep
                signal.signal(signum, _terminate)
    logger = logging.getLogger("benchbd")
    if not any(isinstance(h, _NoteHandler) for h in logger.handlers):
        logger.addHandler(_NoteHandler())
        logger.setLevel(logging.INFO)


def warn_clashes(attack: str = "", defense: str = "") -> None:
    """Every plugin name two packages declare, one warning line each (both packages named);
    a bare name the command was given is refused with the same words instead. The engine's
    plugin registry is imported here, by the commands that run plugins, not with this module:
    the commands that only read result files use it too, and never import the engine."""
    from benchbd.engine.plugins import clash_warnings

    for line in clash_warnings(attack, defense):
        typer.echo(f"benchbd: warning: {line}", err=True)


def invoke(app: typer.Typer, args: list[str], prog_name: str | None = None) -> None:
    """Run a typer app as the `benchbd` command, with usage errors (an unknown option, a
    missing value, a value of the wrong type) in the one-line convention, `benchbd: error:
    ...` and exit 2, instead of click's boxed usage block; `--help` and a bare command still
    print typer's help."""
    try:
        code = app(args=args, prog_name=prog_name, standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("benchbd: error: aborted\n")
        code = 1
    except typer.TyperException as exc:  # click's usage and parameter errors
        code = getattr(exc, "exit_code", 2)
        # `benchbd` alone has printed its help already (as typer does, by class name)
        if type(exc).__name__ != "NoArgsIsHelpError":
            sys.stderr.write(f"benchbd: error: {usage_line(exc)}\n")
    raise SystemExit(code if isinstance(code, int) else 0)


def usage_line(exc: Exception) -> str:
    """A click error as one line, pointing at the command's help."""
    formatted = getattr(exc, "format_message", None)
    message = " ".join((formatted() if formatted else str(exc)).split()) or type(exc).__name__
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"{message[:1].lower()}{message[1:]}{hint}"


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"benchbd: error: {message}", err=True)
    raise typer.Exit(code)


def friendly_errors(command):
    """Commands raise; users read one line. BENCHBD_DEBUG=1 shows the traceback instead."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        install_process_handlers()
        if os.environ.get("BENCHBD_DEBUG"):
            return command(*args, **kwargs)
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            fail("interrupted; no result file was written", code=130)
        except Terminated as exc:
            fail(f"stopped by {exc}; no result file was written", code=128 + exc.signum)
        except EXPECTED as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except Exception as exc:  # a bug: still one line, with the way to see more
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            typer.echo(
                f"benchbd: internal error: {type(exc).__name__}: {first} "
                "(set BENCHBD_DEBUG=1 for the traceback)",
                err=True,
            )
            sys.stderr.flush()
            raise typer.Exit(1) from None

    return wrapper
