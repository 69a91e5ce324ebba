"""List-valued plugin parameters: a sweep over a defense's strength in one command.

A defense's effect depends on how hard it is pushed (CleanCLIP at another learning rate moves
from "no effect" to "erases the backdoor and half the accuracy"), so a benchmark reports a
curve, not one operating point. In a grid file a list given for a scalar parameter
(`lr = [1e-5, 3e-5, 1e-4]` under `[defense_params.cleanclip]`) is one cell per value, several
lists their product; on `benchbd sweep` the same is `--param cleanclip.lr=1e-5,3e-5,1e-4`.
The cells of one poisoned model still share it (the sweep's leader trains it once).

Only a number or a boolean is split at commas on the command line: the type comes from the
plugin's `Params` field, so a text parameter that holds a comma list of its own
(`triggers="badnet,blended"`) is one value. A grid without lists makes the cells, names and
fingerprints it always made.
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from benchbd.core.checks import base_type
from benchbd.core.errors import BenchbdError
from benchbd.core.params import parse_assignments
from benchbd.core.suggest import did_you_mean
from benchbd.engine.plugins import attacks, defenses

SCALARS = (int, float, bool, str)
SPLIT_AT_COMMAS = (int, float, bool)  # a text parameter may hold commas of its own


def _registry(kind: str):
    return attacks if kind == "attack" else defenses


def field_types(kind: str, plugin: str) -> dict[str, Any]:
    """Each parameter of attack or defense `plugin` by name: its type, `int | None` as int."""
    params_cls = _registry(kind).get(plugin).Params
    hints = typing.get_type_hints(params_cls)
    return {f.name: base_type(hints[f.name]) for f in fields(params_cls)}


def expand(kind: str, plugin: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The parameter tables `values` stands for: every list given for a scalar parameter
    expanded, several lists as their product (the first varying slowest), each value once.
    A table without lists is itself alone. A name the plugin does not take is left for the
    Params machinery to refuse, with its did-you-mean."""
    types = field_types(kind, plugin)
    names, choices = [], []
    for name, value in values.items():
        if isinstance(value, list) and types.get(name) in SCALARS:
            if not value:
                raise BenchbdError(f"{kind} {plugin!r}: parameter {name!r} is an empty list; "
                                   f"give at least one value")  # fmt: skip
            names.append(name)
            choices.append(_distinct(value))
    if not names:
        return [dict(values)]
    return [{**values, **dict(zip(names, combo, strict=True))}
            for combo in itertools.product(*choices)]  # fmt: skip


def _distinct(values: Sequence[Any]) -> list[Any]:
    """Each value once, in order; 1 and 1.0 are one value, True and 1 are not."""
    seen: list[tuple[type, Any]] = []
    kept = []
    for value in values:
        key = (bool if isinstance(value, bool) else object, value)
        if key not in seen:
            seen.append(key)
            kept.append(value)
    return kept


def split_values(kind: str, plugin: str, name: str, text: str) -> str | list[str]:
    """A command-line value: a list of its comma-separated parts when the parameter is a
    number or a boolean and the text has commas, else the text as given."""
    if "," not in text or field_types(kind, plugin).get(name) not in SPLIT_AT_COMMAS:
        return text
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise BenchbdError(f"--param {plugin}.{name}={text}: an empty value between commas")
    return parts


def sweep_params(items: Iterable[str], attack_names: Sequence[str],
                 defense_names: Sequence[str]) -> tuple[dict, dict]:  # fmt: skip
    """`benchbd sweep --param PLUGIN.NAME=VALUE` (or PLUGIN:NAME=VALUE, as `run` writes it):
    the attack and defense parameter tables they set, {plugin: {name: value or list}}. A
    sweep runs several plugins, so each parameter names its plugin, one the sweep runs."""
    routed: tuple[dict, dict] = ({}, {})
    for key, value in parse_assignments(list(items)).items():
        plugin, sep, name = key.rpartition(":")  # PLUGIN:NAME, PACKAGE:PLUGIN:NAME
        if not sep or "." in name:  # PLUGIN.NAME, PACKAGE:PLUGIN.NAME
            plugin, _, name = key.rpartition(".")
        plugin, name = plugin.strip(), name.strip()
        if not plugin or not name:
            raise BenchbdError(f"--param {key!r}: write PLUGIN.NAME=VALUE, e.g. cleanclip."
                               f"lr=1e-5,1e-4 (the plugin the parameter belongs to)")  # fmt: skip
        owners = [kind for kind, names in (("attack", attack_names), ("defense", defense_names))
                  if plugin in names]  # fmt: skip
        if not owners:
            known = [*attack_names, *defense_names]
            raise BenchbdError(f"--param {key!r}: {plugin!r} is not an attack or defense of this "
                               f"sweep{did_you_mean(plugin, known)}")  # fmt: skip
        if len(owners) > 1:
            raise BenchbdError(f"--param {key!r}: {plugin!r} is both an attack and a defense of "
                               f"this sweep; set its parameters in a grid file")  # fmt: skip
        kind = owners[0]
        types = field_types(kind, plugin)
        if name not in types:
            hint = did_you_mean(name, list(types)) if types else "; it takes no parameters"
            raise BenchbdError(f"{kind} {plugin!r} has no parameter {name!r}{hint}")
        routed[kind == "defense"].setdefault(plugin, {})[name] = split_values(
            kind, plugin, name, value
        )
    return routed


def merged(tables: Mapping[str, Mapping[str, Any]],
           given: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:  # fmt: skip
    """A grid's per-plugin tables with the command line's parameters over them."""
    out = {plugin: dict(values) for plugin, values in tables.items()}
    for plugin, values in given.items():
        out.setdefault(plugin, {}).update(values)
    return out


def _text(value: Any) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def cell_names(configs: Sequence[Any], base: Sequence[str]) -> list[str]:
    """One distinct name per cell: `base` (attack__defense__seedN) where it is already
    distinct, with the parameters that tell same-named cells apart appended otherwise
    (`badnet__cleanclip__seed0__lr=1e-05`)."""
    by_name: dict[str, list[int]] = {}
    for i, name in enumerate(base):
        by_name.setdefault(name, []).append(i)
    names = list(base)
    for name, members in by_name.items():
        if len(members) < 2:
            continue
        tables = [(configs[i].attack_params, configs[i].defense_params) for i in members]
        differ = [(side, key) for side in (0, 1)
                  for key in dict.fromkeys(k for t in tables for k in t[side])
                  if len({_text(t[side].get(key)) for t in tables}) > 1]  # fmt: skip
        for i, (attack, defense) in zip(members, tables, strict=True):
            parts = [f"{key}={_text((attack, defense)[side].get(key))}" for side, key in differ]
            names[i] = f"{name}__{','.join(parts)}" if parts else name
    seen: dict[str, int] = {}
    for i, name in enumerate(names):  # the same parameters twice: numbered, never merged
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[i] = f"{name}__{seen[name]}"
    return names
