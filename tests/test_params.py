"""Typed plugin parameters: conversion from CLI strings, validation, helpful errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from benchbd.core.errors import BenchbdError
from benchbd.core.params import Params, build, describe, param, parse_assignments, parse_variant


@dataclass(frozen=True)
class Example(Params):
    alpha: float = param(0.2, "blend weight", min=0.0, max=1.0)
    steps: int = param(3, "how many", min=1)
    mode: str = param("fresh", "noise kind", choices=("fresh", "fixed"))
    flag: bool = param(False, "a switch")


def test_strings_are_converted_by_type():
    p = build(Example, {"alpha": "0.5", "steps": "7", "mode": "fixed", "flag": "yes"}, "x")
    assert p == Example(alpha=0.5, steps=7, mode="fixed", flag=True)
    assert isinstance(build(Example, {"alpha": 1}, "x").alpha, float)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"alpha": "abc"}, "parameter 'alpha' of x must be float, got 'abc'"),
        ({"alpha": "1.5"}, "'alpha' must be <= 1.0"),
        ({"steps": "0"}, "'steps' must be >= 1"),
        ({"steps": "2.5"}, "must be int"),
        ({"mode": "other"}, "must be one of fresh, fixed"),
        ({"flag": "maybe"}, "must be bool"),
        ({"alpah": "0.1"}, "x has no parameter 'alpah'; did you mean 'alpha'"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(values, message):
    with pytest.raises(BenchbdError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(Example, values, "x")


def test_describe_lists_name_type_default_help():
    info = {p.name: p for p in describe(Example)}
    assert info["alpha"].type == "float" and info["alpha"].default == 0.2
    assert info["mode"].help == "noise kind"
    assert (info["alpha"].min, info["alpha"].max, info["alpha"].choices) == (0.0, 1.0, None)
    assert (info["steps"].min, info["steps"].max) == (1, None)
    assert info["mode"].choices == ("fresh", "fixed")


def test_parse_assignments():
    assert parse_assignments(["a=1", "attack.b = x=y"]) == {"a": "1", "attack.b": "x=y"}


def test_parse_variant():
    assert parse_variant("kdistance:k=32;reference=train") == (
        "kdistance",
        {"k": "32", "reference": "train"},
    )
    assert parse_variant("safeclip") == ("safeclip", {})
    with pytest.raises(BenchbdError, match="name=value"):
        parse_variant("lof:k")
    with pytest.raises(BenchbdError, match="name=value"):
        parse_assignments(["novalue"])
