"""The `--dataset` string: which source, where, with which options, and for which split.

One source:   KIND:LOCATION[?key=value&key=value]   e.g. csv:cc3m/train.csv?sep=tab
A whole run:  TRAIN[|eval=SOURCE][|clean=SOURCE]   e.g. csv:cc3m.csv|eval=imagefolder:val

Options are plain strings; every file a data file names (images, class names, templates) must
resolve inside the data folder, so a CSV can never point a run at /etc or ../../elsewhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from benchbd.errors import BenchbdError
from benchbd.suggest import did_you_mean

SEPARATORS = {"tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
ROLES = ("eval", "clean")


@dataclass(frozen=True)
class SourceSpec:
    """One parsed source: `kind`, `location` and its `key=value` options."""

    kind: str
    location: str
    options: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.kind}:{self.location}" + (f"?{query}" if query else "")

    def check_options(self, allowed: set[str]) -> None:
        for key in self.options:
            if key not in allowed:
                raise BenchbdError(
                    f"{self.kind}: unknown option {key!r}{did_you_mean(key, allowed)} "
                    f"(options: {', '.join(sorted(allowed))})"
                )

    def get(self, key: str, default: str) -> str:
        return self.options.get(key, default)

    def flag(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.options.get(key, choices[0])
        if value not in choices:
            raise BenchbdError(f"{self.kind}: {key} must be one of {', '.join(choices)}")
        return value


def parse_source(text: str) -> SourceSpec:
    kind, colon, rest = text.partition(":")
    if not colon or not rest:
        raise BenchbdError(f"dataset {text!r}: expected KIND:LOCATION, e.g. csv:data/train.csv")
    location, _, query = rest.partition("?")
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise BenchbdError(f"dataset {text!r}: option {item!r} is not key=value")
        options[key.strip()] = value
    return SourceSpec(kind.strip(), location, options)


def parse_run(text: str) -> tuple[str, dict[str, str]]:
    """'TRAIN|eval=SRC|clean=SRC' -> ('TRAIN', {'eval': 'SRC', 'clean': 'SRC'})."""
    first, *rest = text.split("|")
    roles: dict[str, str] = {}
    for part in rest:
        role, eq, source = part.partition("=")
        if not eq or role.strip() not in ROLES:
            raise BenchbdError(f"dataset {text!r}: {part!r} should be eval=SOURCE or clean=SOURCE")
        roles[role.strip()] = source.strip()
    return first.strip(), roles


def compose(train: str, eval: str | None = None, clean: str | None = None) -> str:
    """The one-string form of a run's data (what `--eval-dataset` / `--clean-dataset` build)."""
    parts = [train] + [f"{role}={src}" for role, src in (("eval", eval), ("clean", clean)) if src]
    return "|".join(parts)


def inside(root: Path, name: str, what: str = "path") -> Path:
    """`name` resolved against `root`; an error if it escapes the folder (.. or absolute)."""
    root = root.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise BenchbdError(f"{what} {name!r} resolves outside the data folder {root}")
    return path


def contained(root: Path, name: str, what: str) -> str:
    """The lexical form of `inside`, fast enough for millions of rows: `name` normalised and
    made relative to `root` (already resolved); an error if it climbs out of it."""
    path = os.path.normpath(name)
    if os.path.isabs(path):
        path = os.path.relpath(path, root)
    if path == ".." or path.startswith(".." + os.sep) or os.path.isabs(path):
        raise BenchbdError(f"{what} {name!r} resolves outside the data folder {root}")
    return path


def existing(location: str, what: str) -> Path:
    path = Path(location).expanduser()
    if not path.exists():
        raise BenchbdError(f"{what} {location!r} does not exist")
    return path


def option_file(root: Path, value: str, what: str) -> Path:
    """A file named on the command line (not inside a data file): relative to the data folder
    when relative, anywhere when absolute."""
    path = Path(value).expanduser()
    return existing(str(path if path.is_absolute() else root / path), what)


def read_names(path: Path) -> list[str] | dict[str, str]:
    """Class names or templates from a JSON file (list, or dict folder -> name) or a text file
    (one per line, blank lines ignored). Data files are parsed, never evaluated."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BenchbdError(
                f"{path.name}: not valid JSON ({exc.msg}, line {exc.lineno})"
            ) from None
        if isinstance(data, list) and all(isinstance(x, str) for x in data):
            return data
        if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
            return {str(k): v for k, v in data.items()}
        raise BenchbdError(f"{path.name}: expected a JSON list of strings or an object of strings")
    return [line.strip() for line in text.splitlines() if line.strip()]


# CLIP's compact prompt ensemble; a templates file replaces it (e.g. the 80 ImageNet prompts).
DEFAULT_TEMPLATES = [
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a good photo of a {}.",
    "a close-up photo of a {}.",
    "itap of a {}.",
]


def templates_from(spec: SourceSpec, root: Path) -> list[str]:
    if "templates" not in spec.options:
        return list(DEFAULT_TEMPLATES)
    names = read_names(option_file(root, spec.options["templates"], "templates file"))
    if not isinstance(names, list) or not names:
        raise BenchbdError(f"{spec.kind}: the templates file must list at least one template")
    for template in names:
        if template.count("{}") != 1 or "{" in template.replace("{}", ""):
            raise BenchbdError(f"template {template!r} must contain '{{}}' exactly once")
    return names
