"""`benchbd list`: every attack and defense on a line of its own; `benchbd list NAME`: one
plugin in full (package, description, every parameter with its type, default and bounds).

The overview fits a screen (the built-in plugins in well under 60 lines at 80 columns), so a
line is cut at the terminal's width rather than wrapped; the parameters, which need the room,
are one `benchbd list NAME` away.
"""

from __future__ import annotations

import shutil
import textwrap

import typer

from benchbd.cli.errors import fail, friendly_errors, warn_clashes
from benchbd.core.params import describe
from benchbd.core.registry import PluginError, Registry, is_builtin
from benchbd.core.suggest import did_you_mean
from benchbd.engine.model_detection import model_detectors
from benchbd.engine.plugins import Defense, attacks, defenses

KINDS = {"attacks": attacks, "defenses": defenses, "model_detectors": model_detectors}
OVERVIEW = ("all", *KINDS)


def _default(value: object) -> str:
    """A string default as typed on the command line (quoted only when empty, to be seen)."""
    return value if isinstance(value, str) and value else repr(value)


def _width() -> int:
    """The terminal's columns ($COLUMNS first), 80 when not a terminal."""
    return shutil.get_terminal_size((80, 24)).columns


def _cut(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


def kind_of(registry: Registry, plugin: type) -> str:
    """An attack's kind, the stage a defense acts at (finetune, screen, pretrain), or a model
    detector's."""
    if registry is attacks:
        return "attack"
    if registry is model_detectors:
        return "model"
    return str(getattr(plugin, "stage", "finetune")) if issubclass(plugin, Defense) else "?"


def overview_lines(title: str, registry: Registry, width: int, column: int) -> list[str]:
    """One line per plugin: its name (in `column` characters), kind or stage, and its
    description's first sentence (with the package in brackets unless built in), cut at
    `width`; a plugin that fails to load says so."""
    names = registry.names()
    lines = [f"{title}:"]
    for name in names:
        info = registry.info(name)
        try:
            plugin = registry.get(name)
        except PluginError as exc:
            lines.append(_cut(f"  {name:<{column}}  {'?':<8}  {exc}", width))
            continue
        summary = plugin.description.strip().split(". ")[0].splitlines()[0]
        if not is_builtin(info.package):
            summary = f"[{info.package}] {summary}"
        kind = kind_of(registry, plugin)
        lines.append(_cut(f"  {name:<{column}}  {kind:<8}  {summary}", width))
    return lines


def detail_lines(registry: Registry, name: str, width: int) -> list[str]:
    """One plugin in full: what it is, where it comes from, and every parameter."""
    info = registry.info(name)
    plugin = registry.get(name)  # a plugin that fails to load: its error, one line
    kind = kind_of(registry, plugin)
    kind = {"attack": "attack", "model": "model detector"}.get(kind, f"defense, {kind} stage")
    lines = [f"{info.name} ({kind}, package {info.package})"]
    lines += textwrap.wrap(plugin.description, width) or [""]
    params = describe(plugin.Params)
    lines.append("parameters (type = default, bounds):" if params else "parameters: none")
    for p in params:
        lines.append(f"  {p.name}: {p.type} = {_default(p.default)} {p.limits()}".rstrip())
        lines += textwrap.wrap(p.help, width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return lines


def plugins_named(name: str) -> list[tuple[Registry, str]]:
    """Every (registry, name) that `name` (bare or PACKAGE:NAME) stands for: an attack, a
    defense, or both ("none" is either). A name that several packages declare is refused by
    the registry with both named; an unknown name with a did-you-mean."""
    found, errors = [], []
    for registry in KINDS.values():
        try:
            registry.info(name)
        except PluginError as exc:
            errors.append(str(exc))
            continue
        found.append((registry, name))
    if not found:
        clash = next((e for e in errors if "packages" in e or "provides no" in e), None)
        if clash:
            fail(clash)
        known = [*OVERVIEW, *attacks.names(), *defenses.names()]
        fail(f"unknown plugin {name!r}{did_you_mean(name, known)} (see `benchbd list`)")
    return found


@friendly_errors
def list_plugins(
    name: str = typer.Argument(
        "all",
        help="a plugin's name: its parameters in full; or attacks, defenses, model_detectors, all",
    ),
) -> None:
    """One line per attack, defense and model detector; `benchbd list NAME` gives one plugin's
    parameters."""
    warn_clashes()  # a clashing name is listed once per package, as PACKAGE:NAME
    width = _width()
    if name in OVERVIEW:
        shown = {title: registry for title, registry in KINDS.items() if name in ("all", title)}
        column = max((len(n) for registry in shown.values() for n in registry.names()), default=0)
        blocks = [overview_lines(title, registry, width, column)
                  for title, registry in shown.items()]  # fmt: skip
        blocks[-1].append("(`benchbd list NAME`: a plugin's parameters)")
    else:
        blocks = [detail_lines(registry, plugin, width)
                  for registry, plugin in plugins_named(name)]  # fmt: skip
    typer.echo("\n\n".join("\n".join(block) for block in blocks))
