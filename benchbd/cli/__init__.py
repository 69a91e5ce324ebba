"""The `benchbd` command: one module per sub-command, each a thin layer over a library call.

A sub-command's module is imported when the command is looked up, not when the app is built
(`LazyCommands`): `benchbd table`, `plot`, `claims` and `report --no-triggers` read result
files and never import the training engine or torch (a table over a thousand results comes
back in about a second), and `from benchbd.cli import app` costs no more. The commands that
train, sweep, list plugins or draw a trigger (`run`, `sweep`, `list`, `show`) import the engine
at their module's top, as any module may; `benchbd --help` looks every command up, so it
imports them all. `main()` starts the file-reading commands on an app of their own; every other
command runs after `--kernels` (or $BENCHBD_KERNELS) has chosen the CPU kernels: they are fixed
when torch is first imported.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Iterator, Mapping

import typer
from typer.core import TyperGroup

from benchbd.core import kernels
from benchbd.core.errors import BenchbdError

# name -> (module, function); the order is the order of `benchbd --help`
COMMANDS = {
    "run": ("benchbd.cli.run_cmd", "run"),
    "sweep": ("benchbd.cli.sweep_cmd", "sweep_cmd"),
    "list": ("benchbd.cli.list_cmd", "list_plugins"),
    "table": ("benchbd.cli.table_cmd", "table"),
    "plot": ("benchbd.cli.plot_cmd", "plot"),
    "show": ("benchbd.cli.show_cmd", "show"),
    "report": ("benchbd.cli.report_cmd", "report"),
    "claims": ("benchbd.cli.claims_cmd", "claims"),
    "zoo": ("benchbd.cli.zoo_cmd", "zoo"),
}
LIGHT = ("table", "plot", "claims")  # commands that need no model code
KERNELS_HELP = (
    "CPU kernels: portable (AVX2 everywhere: the same numbers on every x86-64 CPU) or "
    "native (this CPU's fastest, other numbers)"
)


def _typer(**kwargs) -> typer.Typer:
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False, **kwargs)


def _function(name: str):
    module, attribute = COMMANDS[name]
    return getattr(importlib.import_module(module), attribute)


def _command(name: str) -> typer.core.TyperCommand:
    """The click command typer makes of COMMANDS[name], as `app.command(name)` would."""
    single = _typer()
    single.command(name)(_function(name))
    return typer.main.get_command(single)


class _CommandTable(Mapping[str, typer.core.TyperCommand]):
    """The sub-commands by name, in COMMANDS order, each built on its first lookup."""

    def __init__(self) -> None:
        self._built: dict[str, typer.core.TyperCommand] = {}

    def __getitem__(self, name: str) -> typer.core.TyperCommand:
        if name not in COMMANDS:
            raise KeyError(name)
        if name not in self._built:
            self._built[name] = _command(name)
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)


class LazyCommands(TyperGroup):
    """The `benchbd` group: its commands are COMMANDS, each module imported only when its
    command runs or a help page lists it (click's group reads `commands` as a mapping)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.commands = _CommandTable()  # type: ignore[assignment]


def _no_options() -> None:
    """The group's own callback: it takes no option (typer builds a group only with one)."""


@functools.cache
def build_app() -> typer.Typer:
    return _typer(
        name="benchbd",
        help="Benchmark backdoor attacks and defenses on CLIP-style models.",
        no_args_is_help=True,
        cls=LazyCommands,
        callback=_no_options,
    )


def __getattr__(name: str):
    if name == "app":  # `from benchbd.cli import app` builds the full app on first use
        return build_app()
    raise AttributeError(name)


def main() -> None:
    """The `benchbd` command. Signals are caught from the first line, so Ctrl-C or SIGTERM
    while torch is still importing is one line too, not a traceback."""
    from benchbd.cli.errors import Terminated, install_process_handlers, invoke

    install_process_handlers()
    try:
        _dispatch(invoke)
    except KeyboardInterrupt:
        sys.stderr.write("benchbd: error: interrupted\n")
        raise SystemExit(130) from None
    except Terminated as exc:
        sys.stderr.write(f"benchbd: error: stopped by {exc}\n")
        raise SystemExit(128 + exc.signum) from None


def kernels_argument(args: list[str]) -> str | None:
    """The value of `--kernels` among a command's arguments, read before typer parses them."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--kernels" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--kernels="):
            return arg.partition("=")[2]
    return None


def _dispatch(invoke) -> None:
    """`invoke` runs a typer app with benchbd's one-line usage errors (cli.errors)."""
    args = sys.argv[1:]
    if args and args[0] in LIGHT:
        light = _typer()
        light.command()(_function(args[0]))
        invoke(light, args[1:], f"benchbd {args[0]}")
        return
    try:
        kernels.select(kernels_argument(args))
    except BenchbdError as exc:
        sys.stderr.write(f"benchbd: error: {exc}\n")
        raise SystemExit(2) from None
    invoke(build_app(), args)
