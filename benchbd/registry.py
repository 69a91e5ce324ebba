"""A typed plugin registry fed by Python entry points, loaded lazily.

Finding plugins (reading entry-point metadata, cheap) is kept apart from loading them (importing
their module, possibly expensive or broken): `benchbd list` can show every plugin, and a plugin
whose import fails is reported with the package it came from while every other plugin works.
Built-in plugins arrive through the same entry-point groups as third-party ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from benchbd.suggest import did_you_mean

T = TypeVar("T")


class PluginError(Exception):
    """A plugin name that does not resolve, or a plugin that cannot be loaded."""


@dataclass(frozen=True)
class PluginInfo:
    """What is known about a plugin before importing it: its name, target and package."""

    name: str
    target: str
    package: str


class Registry(Generic[T]):
    """Plugins of one kind (attacks or defenses), by name.

    Entry points are read once, on first use; each plugin is imported on first `get`.
    `register` adds a plugin in-process (tests, notebooks) without packaging it.
    """

    def __init__(self, group: str, kind: type[T]) -> None:
        self.group = group
        self.kind = kind
        self._infos: dict[str, PluginInfo] | None = None
        self._entry_points: dict[str, EntryPoint] = {}
        self._loaded: dict[str, type[T]] = {}
        self._registered: dict[str, tuple[PluginInfo, type[T]]] = {}

    def _discover(self) -> dict[str, PluginInfo]:
        if self._infos is None:
            self._infos = {}
            for ep in entry_points(group=self.group):
                package = ep.dist.name if ep.dist is not None else "unknown"
                self._infos[ep.name] = PluginInfo(ep.name, ep.value, package)
                self._entry_points[ep.name] = ep
            for name, (info, plugin) in self._registered.items():
                self._infos[name] = info
                self._loaded[name] = plugin
        return self._infos

    def refresh(self) -> None:
        """Read the entry points again (after a package was installed at run time)."""
        self._infos = None
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
        return sorted(self._discover())

    def info(self, name: str) -> PluginInfo:
        infos = self._discover()
        if name not in infos:
            kind = self.group.rsplit(".", 1)[-1].rstrip("s")
            raise PluginError(f"unknown {kind} {name!r}{did_you_mean(name, infos)}")
        return infos[name]

    def origin(self, name: str) -> str:
        """The distribution package that provides a plugin."""
        return self.info(name).package

    def get(self, name: str) -> type[T]:
        """The plugin class; imports its module on first use."""
        info = self.info(name)
        if name not in self._loaded:
            try:
                plugin = self._entry_points[name].load()
            except Exception as exc:  # a broken plugin must not take the host down
                raise PluginError(
                    f"plugin {name!r} from package {info.package!r} failed to load: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if not (isinstance(plugin, type) and issubclass(plugin, self.kind)):
                raise PluginError(
                    f"plugin {name!r} from package {info.package!r} is not a "
                    f"{self.kind.__name__} subclass ({info.target})"
                )
            self._loaded[name] = plugin
        return self._loaded[name]
