"""A typed plugin registry fed by Python entry points, loaded lazily.

Finding plugins (reading entry-point metadata, cheap) is kept apart from loading them (importing
their module, possibly expensive or broken): `benchbd list` can show every plugin, and a plugin
whose import fails is reported with the package it came from while every other plugin works.
Built-in plugins arrive through the same entry-point groups as third-party ones.

Two packages may declare the same plugin name. Neither wins silently: the bare name is refused
with both packages named, and the user picks one as `PACKAGE:NAME` (`benchbd:sig`,
`acme-sig:sig`). Package names compare as installers compare them (PEP 503: case, `-`, `_` and
`.` alike).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from benchbd.core.suggest import did_you_mean

T = TypeVar("T")
# The package of benchbd's own plugins: a plugin it provides is named by its bare name in
# result files and fingerprints, as it always was.
BUILTIN = "benchbd"


class PluginError(Exception):
    """A plugin name that does not resolve, or a plugin that cannot be loaded."""


def canonical_package(name: str) -> str:
    """A distribution name as installers compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_name(name: str) -> tuple[str | None, str]:
    """'PACKAGE:NAME' -> (PACKAGE, NAME); a bare name -> (None, NAME)."""
    package, colon, bare = name.rpartition(":")
    return (package.strip() or None, bare.strip()) if colon else (None, name.strip())


def bare_name(name: str) -> str:
    """The plugin's own name, without a package qualifier."""
    return split_name(name)[1]


def is_builtin(package: str) -> bool:
    return canonical_package(package) == BUILTIN


@dataclass(frozen=True)
class PluginInfo:
    """What is known about a plugin before importing it: its name, target and package."""

    name: str
    target: str
    package: str

    @property
    def qualified(self) -> str:
        """`PACKAGE:NAME`, the spelling that names this plugin whatever else is installed."""
        return f"{self.package}:{self.name}"


class Registry(Generic[T]):
    """Plugins of one kind (attacks or defenses), by name.

    Entry points are read once, on first use; each plugin is imported on first `get`.
    `register` adds a plugin in-process (tests, notebooks) without packaging it. A name two
    packages declare is a clash (`clashes`): it resolves only as `PACKAGE:NAME`.
    """

    def __init__(self, group: str, kind: type[T]) -> None:
        self.group = group
        self.kind = kind
        # name -> its providers, by canonical package name, in the order found
        self._providers: dict[str, dict[str, PluginInfo]] | None = None
        self._entry_points: dict[tuple[str, str], EntryPoint] = {}
        self._loaded: dict[tuple[str, str], type[T]] = {}
        self._registered: dict[str, tuple[PluginInfo, type[T]]] = {}

    @property
    def kind_name(self) -> str:
        return self.group.rsplit(".", 1)[-1].rstrip("s")

    def _discover(self) -> dict[str, dict[str, PluginInfo]]:
        if self._providers is None:
            providers: dict[str, dict[str, PluginInfo]] = {}
            for ep in entry_points(group=self.group):
                package = ep.dist.name if ep.dist is not None else "unknown"
                key = canonical_package(package)
                # One distribution found twice on the path (importlib dedups by name) or
                # declaring a name twice: the first is what Python itself would import.
                if key not in providers.setdefault(ep.name, {}):
                    providers[ep.name][key] = PluginInfo(ep.name, ep.value, package)
                    self._entry_points[(ep.name, key)] = ep
            for name, found in providers.items():  # built-in first, then by package: an
                # order that does not hang on which entry point was read first
                order = sorted(found, key=lambda key: (key != BUILTIN, key))
                providers[name] = {key: found[key] for key in order}
            for name, (info, plugin) in self._registered.items():
                key = canonical_package(info.package)
                providers[name] = {key: info}  # shadows the entry points of that name
                self._loaded[(name, key)] = plugin
            self._providers = providers
        return self._providers

    def refresh(self) -> None:
        """Read the entry points again (after a package was installed at run time)."""
        self._providers = None
        self._entry_points.clear()
        self._loaded.clear()

    def register(self, name: str, plugin: type[T], package: str = "__main__") -> None:
        """Add a plugin class in-process; it shadows an entry point of the same name."""
        info = PluginInfo(name, f"{plugin.__module__}:{plugin.__qualname__}", package)
        self._registered[name] = (info, plugin)
        self.refresh()

    def unregister(self, name: str) -> None:
        self._registered.pop(name, None)
        self.refresh()

    def names(self) -> list[str]:
        """Every plugin once: its bare name, or `PACKAGE:NAME` for each provider of a name
        that several packages declare (so that 'all' runs each of them, by a name that
        resolves)."""
        found = []
        for name, providers in self._discover().items():
            if len(providers) == 1:
                found.append(name)
            else:
                found += [info.qualified for info in providers.values()]
        return sorted(found, key=lambda n: (bare_name(n), n))

    def clashes(self) -> dict[str, list[PluginInfo]]:
        """Names declared by more than one package, with their providers."""
        return {name: list(providers.values())
                for name, providers in sorted(self._discover().items())
                if len(providers) > 1}  # fmt: skip

    def clash_notes(self) -> list[str]:
        """One line per clash, naming both packages and how to pick one."""
        return [clash_message(self.kind_name, name, providers)
                for name, providers in self.clashes().items()]  # fmt: skip

    def info(self, name: str) -> PluginInfo:
        """The plugin `name` (bare or `PACKAGE:NAME`) stands for; a bare name that several
        packages declare is refused with every provider named."""
        providers = self._discover()
        package, bare = split_name(name)
        if bare not in providers:
            known = sorted(providers)
            raise PluginError(f"unknown {self.kind_name} {bare!r}{did_you_mean(bare, known)}")
        found = providers[bare]
        if package is None:
            if len(found) > 1:
                raise PluginError(clash_message(self.kind_name, bare, list(found.values())))
            return next(iter(found.values()))
        key = canonical_package(package)
        if key not in found:
            offered = ", ".join(info.qualified for info in found.values())
            raise PluginError(f"package {package!r} provides no {self.kind_name} {bare!r} "
                              f"(it is provided as {offered})")  # fmt: skip
        return found[key]

    def origin(self, name: str) -> str:
        """The distribution package that provides a plugin."""
        return self.info(name).package

    def get(self, name: str) -> type[T]:
        """The plugin class; imports its module on first use."""
        info = self.info(name)
        key = (info.name, canonical_package(info.package))
        if key not in self._loaded:
            try:
                plugin = self._entry_points[key].load()
            except Exception as exc:  # a broken plugin must not take the host down
                raise PluginError(
                    f"plugin {info.name!r} from package {info.package!r} failed to load: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if not (isinstance(plugin, type) and issubclass(plugin, self.kind)):
                raise PluginError(
                    f"plugin {info.name!r} from package {info.package!r} is not a "
                    f"{self.kind.__name__} subclass ({info.target})"
                )
            self._loaded[key] = plugin
        return self._loaded[key]


def clash_message(kind: str, name: str, providers: list[PluginInfo]) -> str:
    packages = " and ".join(repr(info.package) for info in providers)
    choices = " or ".join(info.qualified for info in providers)
    return (
        f"{kind} {name!r} is provided by {len(providers)} packages, {packages}: "
        f"name one as {choices}"
    )
