"""What a sweep covers, and the TOML grid file that says it: attacks, defenses and seeds, each
plugin's parameters (a list is a cell per value), the run options every cell shares, split
sizes and the pretraining recipe. Every section is checked when the file is read, before
anything runs; `Grid.cells()` is the sweep's list of `RunConfig`s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomllib

from benchbd.core.checks import check_seed
from benchbd.core.errors import BenchbdError
from benchbd.core.registry import PluginError
from benchbd.core.suggest import did_you_mean
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.param_lists import expand
from benchbd.engine.plugins import attacks, defenses
from benchbd.engine.run_config import (
    RECIPE_OPTIONS,
    RUN_OPTIONS,
    SIZE_OPTIONS,
    RunConfig,
    plugin_params,
    run_arguments,
)
from benchbd.engine.train import TrainConfig


@dataclass(frozen=True)
class Grid:
    """What a sweep covers: names, seeds, per-plugin parameters and shared run options."""

    attacks: list[str]
    defenses: list[str]
    seeds: list[int]
    attack_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    defense_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)

    def with_run(self, options: dict[str, Any]) -> Grid:
        """The grid with `options` (RUN_OPTIONS; None: not given) over its own: a size or
        recipe option replaces the [sizes] or [pretrain] setting it names."""
        given = {name: value for name, value in options.items() if value is not None}
        sizes = {k: v for k, v in self.sizes.items()
                 if not any(SIZE_OPTIONS.get(name) == k for name in given)}  # fmt: skip
        pretrain = {k: v for k, v in self.pretrain.items()
                    if not any(RECIPE_OPTIONS.get(name) == k for name in given)}  # fmt: skip
        return replace(self, run={**self.run, **given}, sizes=sizes, pretrain=pretrain)

    def cells(self) -> list[RunConfig]:
        """Grouped by (attack, seed) so each group's leader comes first. [run] takes the
        options `benchbd run` takes (run_config.run_arguments), [sizes] and [pretrain] set
        what they name; RunConfig fills the rest as for any run. A list given
        for a scalar plugin parameter is a cell per value (several lists: their product; see
        benchbd.engine.param_lists), the values of one defense following each other in a group."""
        try:
            return self._cells()
        except TypeError as exc:  # an option RunConfig does not take
            raise BenchbdError(f"grid: {exc}") from None

    def _cells(self) -> list[RunConfig]:
        attack_tables = {a: expand("attack", a, params_for(attacks, a, self.attack_params))
                         for a in self.attacks}  # fmt: skip
        defense_tables = {d: expand("defense", d, params_for(defenses, d, self.defense_params))
                          for d in self.defenses}  # fmt: skip
        return [
            RunConfig(
                attack=attack,
                defense=defense,
                seed=seed,
                attack_params=dict(attack_params),
                defense_params=dict(defense_params),
                **run_arguments(self.run, self.sizes, self.pretrain),
            )  # fmt: skip
            for attack in self.attacks
            for attack_params in attack_tables[attack]
            for seed in self.seeds
            for defense in self.defenses
            for defense_params in defense_tables[defense]
        ]


def params_for(registry, name: str, tables: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The parameter table a grid gives plugin `name`: the one under the same spelling, else
    one under another spelling of the same plugin (`sig` and `benchbd:sig`, when only one
    package declares `sig`)."""
    if name in tables:
        return tables[name]
    wanted = registry.info(name)
    for key, table in tables.items():
        try:
            if registry.info(key) == wanted:
                return table
        except PluginError:
            continue
    return {}


def expand_names(spec: str | Sequence[str], kind: str) -> list[str]:
    """'all', a comma list or a list of names; every name checked against its registry.
    'all' attacks leaves out plugins that poison nothing (`Attack.poisons` false: a baseline
    has no ASR to defend)."""
    registry = attacks if kind == "attack" else defenses
    if isinstance(spec, str):
        names = spec.split(",")
    elif isinstance(spec, (list, tuple)) and all(isinstance(n, str) for n in spec):
        names = list(spec)
    else:
        raise BenchbdError(f"{kind}s must be 'all', a comma-separated string or a list of "
                           f"names, got {spec!r}")  # fmt: skip
    names = [n.strip() for n in names if n.strip()]
    if names == ["all"]:
        return [n for n in registry.names() if kind != "attack" or attacks.get(n).poisons]
    for name in names:
        registry.get(name)  # raises with a did-you-mean
    if not names:
        raise BenchbdError(f"no {kind}s given")
    return list(dict.fromkeys(names))


def parse_seeds(spec: str | int | Sequence[int]) -> list[int]:
    if isinstance(spec, str):
        try:
            seeds = [int(s) for s in spec.split(",")]
        except ValueError:
            raise BenchbdError(
                f"seeds must be integers separated by commas, got {spec!r}"
            ) from None
    elif isinstance(spec, int) and not isinstance(spec, bool):
        seeds = [spec]
    elif isinstance(spec, (list, tuple)):
        seeds = list(spec)
    else:
        seeds = []
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise BenchbdError(f"seeds must be a non-empty list of integers, got {spec!r}")
    return list(dict.fromkeys(check_seed(s) for s in seeds))


GRID_KEYS = {"attacks", "defenses", "seeds", "attack_params", "defense_params", "run", "sizes",
             "pretrain"}  # fmt: skip


def _table(data: dict, key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise BenchbdError(f"grid file: [{key}] must be a table, got {value!r}")
    return value


def _known_keys(table: dict[str, Any], section: str | None, allowed) -> None:
    what = f"[{section}] option" if section else "key"
    for name in sorted(set(table) - set(allowed)):
        raise BenchbdError(f"grid file: unknown {what} {name!r}{did_you_mean(name, allowed)}")


def _plugin_params(data: dict, kind: str) -> dict[str, dict[str, Any]]:
    """[attack_params.NAME] / [defense_params.NAME]: every NAME a registered plugin, every
    value one of its parameters, of the right type, within bounds (checked now, not at run)."""
    section = f"{kind}_params"
    tables = _table(data, section)
    for name, values in tables.items():
        where = f"[{section}.{name}]"
        if not isinstance(values, dict):
            raise BenchbdError(f"grid file: {where} must be a table of name = value")
        try:
            for table in expand(kind, name, values):  # a list: each of its values
                plugin_params(kind, name, table)  # also for a plugin the grid does not run
        except (PluginError, BenchbdError) as exc:  # an unknown name comes with a suggestion
            raise BenchbdError(f"grid file: {where}: {exc}") from None
    return tables


def load_grid(path: Path) -> Grid:
    """A TOML grid file (parsed as data, never evaluated):

    attacks = ["badnet", "blended"]     # or "all"
    defenses = "all"
    seeds = [0, 1, 2]
    [run]                               # `benchbd run`'s options: dataset, epochs, threads, ...
    poison_rate = 0.01
    [attack_params.blended]
    alpha = 0.3
    [defense_params.cleanclip]
    lr = [1e-5, 1e-4, 1e-3]            # a list: one cell per value (the product of lists)

    Every section is checked here, before anything runs: a misspelt key or plugin name, a
    value of the wrong type or a non-finite number is one error naming its place.
    """
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise BenchbdError(f"cannot read grid file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BenchbdError(f"grid file {str(path)!r} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchbdError(f"grid file {str(path)!r} is not valid TOML: {exc}") from None
    _known_keys(data, None, GRID_KEYS)
    run_options = _table(data, "run")
    _known_keys(run_options, "run", RUN_OPTIONS)
    sizes, pretrain = _table(data, "sizes"), _table(data, "pretrain")
    _known_keys(sizes, "sizes", DataSizes.__dataclass_fields__)
    _known_keys(pretrain, "pretrain", TrainConfig.__dataclass_fields__)
    try:
        grid = Grid(
            attacks=expand_names(data.get("attacks", "all"), "attack"),
            defenses=expand_names(data.get("defenses", "all"), "defense"),
            seeds=parse_seeds(data.get("seeds", [0])),
            attack_params=_plugin_params(data, "attack"),
            defense_params=_plugin_params(data, "defense"),
            run=run_options,
            sizes=sizes,
            pretrain=pretrain,
        )
        grid.cells()  # builds every RunConfig: types, ranges and finiteness checked
    except BenchbdError as exc:
        message = str(exc)
        prefixed = message if message.startswith("grid") else f"grid file: {message}"
        raise BenchbdError(prefixed) from None
    return grid
