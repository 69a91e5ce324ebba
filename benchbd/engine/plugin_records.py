"""How a run records the plugins it ran: their result-file record (`PluginRecord`, the schema
in benchbd.core.results) filled in from what is installed. The package's version comes from
its distribution and the `baseline` flag from the plugin class the registries find, so the
result file says both without a reader ever loading a plugin."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from benchbd.core.registry import PluginError
from benchbd.core.results import PluginRecord
from benchbd.engine.plugins import attacks, defenses


def plugin_record_of(name: str, package: str, params: dict[str, Any],
                     role: str | None = None) -> PluginRecord:  # fmt: skip
    """The record of a plugin, with the installed version of the package providing it and
    whether it declares itself a baseline. `role` ("attack" or "defense") says which
    registry to look the plugin up in; without it, every registry holding the name."""
    try:
        found = version(package)
    except (PackageNotFoundError, ValueError):  # e.g. a plugin registered in-process
        found = None
    return PluginRecord(name, package, params, found, declared_baseline(name, role, package))


def declared_baseline(name: str, role: str | None = None,
                      package: str | None = None) -> bool | None:  # fmt: skip
    """The `baseline` flag the plugin class registered under `name` (from `package`, when
    given: two packages may declare one name) declares; None when no registry (of `role`, or
    any) holds a loadable plugin of that name, or when an attack and a defense of that name
    disagree."""
    registries = {"attack": attacks, "defense": defenses}
    if role is not None and role not in registries:
        raise ValueError(f"role must be 'attack' or 'defense', got {role!r}")
    flags = set()
    for kind, registry in registries.items():
        if role not in (None, kind):
            continue
        try:
            flags.add(bool(registry.get(f"{package}:{name}" if package else name).baseline))
        except PluginError:
            continue
    return flags.pop() if len(flags) == 1 else None
