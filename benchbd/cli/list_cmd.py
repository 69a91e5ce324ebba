"""`benchbd list`: every attack and defense, where it comes from, and its parameters."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchbd.cli.errors import fail, friendly_errors, warn_clashes
from benchbd.core.params import describe
from benchbd.core.registry import PluginError, Registry
from benchbd.engine.model_detection import model_detectors
from benchbd.engine.plugins import Defense, attacks, defenses

KINDS = {"attacks": attacks, "defenses": defenses, "model_detectors": model_detectors}


def _default(value: object) -> str:
    """A string default as typed on the command line (quoted only when empty, to be seen)."""
    return value if isinstance(value, str) and value else repr(value)


def plugin_table(title: str, registry: Registry) -> Table:
    table = Table(title=title, show_lines=True)
    for column in ("name", "package", "description", "parameters (type = default, bounds)"):
        table.add_column(column)
    for name in registry.names():
        info = registry.info(name)
        try:
            plugin = registry.get(name)
        except PluginError as exc:
            table.add_row(name, info.package, f"[red]{exc}[/red]", "")
            continue
        params = "\n".join(
            escape(f"{p.name}: {p.type} = {_default(p.default)} {p.limits()}".rstrip())
            + f"  [dim]{escape(p.help)}[/dim]"
            for p in describe(plugin.Params)
        )
        description = plugin.description
        stage = getattr(plugin, "stage", "finetune")
        if issubclass(plugin, Defense) and stage != "finetune":  # when it acts, if not after
            description += f"\n[dim]stage: {escape(str(stage))}[/dim]"
        table.add_row(name, info.package, description, params or "-")
    return table


@friendly_errors
def list_plugins(
    kind: str = typer.Argument("all", help="attacks, defenses, model_detectors, or all"),
) -> None:
    """List every registered attack and defense with its package, description and parameters."""
    if kind != "all" and kind not in KINDS:
        fail(f"unknown kind {kind!r}; choose attacks, defenses, model_detectors or all")
    console = Console()
    warn_clashes()  # a clashing name is listed once per package, as PACKAGE:NAME
    for title, registry in KINDS.items():
        if kind in ("all", title):
            console.print(plugin_table(title, registry))
