"""Type and finiteness checks for the dataclasses that describe an experiment.

A TOML grid hands over whatever its author typed (`poison_rate = "0.01"`, `epochs = inf`,
`seeds = [true]`), and Python floats happily carry NaN through every `<` and `>` bound. So each
config dataclass checks its own fields against their type hints when it is built: a wrong type
or a non-finite number is one clear `BenchbdError` naming the field, never a crash mid-run or a
`NaN` written into a result file. A leaf module: it imports nothing from benchbd but errors.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from benchbd.core.errors import BenchbdError

SEED_LIMIT = 2**63  # torch.Generator.manual_seed takes a signed 64-bit seed


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def base_type(hint: Any) -> Any:
    """int | None -> int; plain and generic types (dict[str, Any]) unchanged."""
    if not _is_union(hint):
        return hint
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 else hint


def optional(hint: Any) -> bool:
    return _is_union(hint) and type(None) in typing.get_args(hint)


def check_value(name: str, value: Any, hint: Any, owner: str = "", noun: str = "") -> Any:
    """`value` as the type `hint` asks for (an int where a float is asked becomes a float);
    a BenchbdError naming `owner` and `name` when it is of another type or not finite."""
    where = f"{noun}{name!r}" + (f" of {owner}" if owner else "")
    expected = base_type(hint)
    if value is None:
        if optional(hint):
            return None
        raise BenchbdError(f"{where} must be set")
    if expected not in (int, float, str, bool):
        return value  # containers and nested configs check themselves
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise BenchbdError(f"{where} must be {expected.__name__}, got {value!r}")
    if expected is float and not math.isfinite(value):
        raise BenchbdError(f"{where} must be a finite number, got {value}")
    return value


def check_fields(obj: Any, owner: str = "") -> None:
    """Check (and coerce int to float in) every scalar field of a frozen dataclass instance."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = check_value(f.name, getattr(obj, f.name), hints[f.name], owner)
        object.__setattr__(obj, f.name, value)


def check_seed(seed: Any, what: str = "seed") -> int:
    """A run seed: a whole number that every random generator accepts."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise BenchbdError(f"{what} must be a whole number in [0, 2**63), got {seed!r}")
    return seed
