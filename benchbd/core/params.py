"""Typed, validated plugin parameters: one dataclass per plugin, read by CLI, results and `list`.

A parameter is a dataclass field made with `param(default, help, ...)`; the bounds and choices
given there are enforced when the dataclass is built, and `--param name=value` strings are
converted with the field's type hint. Nothing is ever `eval()`ed.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from benchbd.core.checks import base_type as _base_type
from benchbd.core.checks import check_value
from benchbd.core.errors import BenchbdError
from benchbd.core.suggest import did_you_mean

P = TypeVar("P", bound="Params")


def param(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] | None = None,
    recorded_at_default: bool = True,
) -> Any:
    """A plugin parameter with its default, one-line help, and validation bounds.

    recorded_at_default=False is for a parameter added to a plugin after results were made:
    at its default it is left out of `to_dict()`, so the recorded parameters and the cache and
    run fingerprints of every existing setting stay what they were (a file without the field
    is read back with its default), while a run that sets it records it.
    """
    metadata = {"help": help, "min": min, "max": max, "choices": choices}
    if not recorded_at_default:
        metadata["recorded_at_default"] = False
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Params:
    """Base class of every plugin's parameters: validates bounds and choices on creation."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            meta = f.metadata
            value = check_value(
                f.name, getattr(self, f.name), hints[f.name] | None, noun="parameter "
            )
            object.__setattr__(self, f.name, value)
            if value is None:
                continue
            if meta.get("min") is not None and value < meta["min"]:
                raise BenchbdError(f"parameter {f.name!r} must be >= {meta['min']}, got {value}")
            if meta.get("max") is not None and value > meta["max"]:
                raise BenchbdError(f"parameter {f.name!r} must be <= {meta['max']}, got {value}")
            if meta.get("choices") and value not in meta["choices"]:
                raise BenchbdError(
                    f"parameter {f.name!r} must be one of {', '.join(meta['choices'])}; "
                    f"got {value!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """The parameters as recorded and fingerprinted (see `param`'s recorded_at_default)."""
        values = dataclasses.asdict(self)
        for f in fields(self):
            if f.metadata.get("recorded_at_default", True) is False and values[f.name] == f.default:
                del values[f.name]
        return values

    def scaled_to(self, clean_pairs: int, given: Collection[str]) -> Params:
        """These parameters for a defender holding `clean_pairs` clean pairs. `given` names
        the parameters the user set, which a plugin keeps as given; a recipe whose length is
        counted in passes over the clean set overrides this (see `scale_epochs`). By default
        nothing depends on the size."""
        return self


def scale_epochs(params: P, available: int, size_field: str, given: Collection[str]) -> P:
    """`params` with `epochs` raised, when the user left it unset, so that a defender holding
    fewer pairs than the recipe's reference size (the default of `size_field`, e.g. 5,000 clean
    pairs) still takes as many optimizer steps as the recipe does at that size.

    Why: a recipe counted in epochs shrinks with the data. CleanCLIP's 5 epochs are 195 steps
    of 128 on 5,000 clean pairs but 10 steps on a small real set's 300, which leaves a
    backdoor in place and says nothing about the defense. Epochs are never lowered, and the
    scaled count is recorded, so the result file states the recipe that ran."""
    if "epochs" in given:
        return params
    reference = next(f.default for f in fields(params) if f.name == size_field)
    used = min(getattr(params, size_field) or available, available)
    batch = params.batch_size  # type: ignore[attr-defined]
    reference_steps = params.epochs * max(1, reference // batch)  # type: ignore[attr-defined]
    per_epoch = max(1, used // batch)
    if params.epochs * per_epoch >= reference_steps:  # type: ignore[attr-defined]
        return params
    return dataclasses.replace(params, epochs=reference_steps / per_epoch)


@dataclass(frozen=True)
class ParamInfo:
    """One parameter as `benchbd list` shows it, bounds and choices included, so a value is
    known to be accepted before a run spends minutes getting to it."""

    name: str
    type: str
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None

    def limits(self) -> str:
        """'[0, 1]', '[>= 1]', '[<= 5]', '{a, b}', or '' when any value of the type goes."""
        if self.choices:
            return "{" + ", ".join(self.choices) + "}"
        if self.min is not None and self.max is not None:
            return f"[{self.min:g}, {self.max:g}]"
        if self.min is not None:
            return f"[>= {self.min:g}]"
        if self.max is not None:
            return f"[<= {self.max:g}]"
        return ""


def describe(params_cls: type[Params]) -> list[ParamInfo]:
    hints = typing.get_type_hints(params_cls)
    return [
        ParamInfo(
            f.name,
            _base_type(hints[f.name]).__name__,
            f.default,
            f.metadata.get("help", ""),
            f.metadata.get("min"),
            f.metadata.get("max"),
            f.metadata.get("choices"),
        )
        for f in fields(params_cls)
    ]


def convert(text: str, target: type) -> Any:
    """A CLI string to a value of the field's type; a clear error when it does not parse."""
    if target is bool:
        lowered = text.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"{text!r} is not a boolean")
    if text.strip().lower() == "none":
        return None
    return target(text)


def build(params_cls: type[Params], values: dict[str, Any], owner: str) -> Params:
    """Parameters from strings (CLI) or typed values (result files); unknown names rejected."""
    hints = typing.get_type_hints(params_cls)
    names = [f.name for f in fields(params_cls)]
    kwargs = {}
    for name, value in values.items():
        if name not in names:
            hint = did_you_mean(name, names) if names else "; it takes no parameters"
            raise BenchbdError(f"{owner} has no parameter {name!r}{hint}")
        if isinstance(value, str) and _base_type(hints[name]) is not str:
            try:
                value = convert(value, _base_type(hints[name]))
            except ValueError:
                expected = _base_type(hints[name]).__name__
                raise BenchbdError(
                    f"parameter {name!r} of {owner} must be {expected}, got {value!r}"
                ) from None
        kwargs[name] = value
    try:
        return params_cls(**kwargs)
    except BenchbdError as exc:  # say whose parameter it is
        raise BenchbdError(f"{owner}: {exc}") from None


def parse_assignments(items: list[str]) -> dict[str, str]:
    """['alpha=0.1', 'attack.size=3'] -> {'alpha': '0.1', 'attack.size': '3'}."""
    parsed = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BenchbdError(f"--param expects name=value, got {item!r}")
        parsed[name.strip()] = value.strip()
    return parsed


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """'kdistance:k=32;reference=train' -> ('kdistance', {'k': '32', 'reference': 'train'}):
    a plugin and its parameters in one word, as the benchmark scripts take them."""
    name, _, rest = text.partition(":")
    return name, parse_assignments([item for item in rest.split(";") if item])
