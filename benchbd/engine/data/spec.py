"""The `--dataset` string: which source, where, with which options, and for which split.

One source:   KIND:LOCATION[?key=value&key=value]   e.g. csv:cc3m/train.csv?sep=tab
A whole run:  TRAIN[|eval=SOURCE][|clean=SOURCE]   e.g. csv:cc3m.csv|eval=imagefolder:val

Options are plain strings; every file a data file names (images, class names, templates) must
resolve inside the data folder, links followed, so a CSV can never point a run at /etc or
../../elsewhere, whether by its own paths or through a link inside the folder.
"""

from __future__ import annotations

import codecs
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchbd.core.errors import BenchbdError
from benchbd.core.suggest import did_you_mean

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
            raise BenchbdError(
                f"{self.kind}: {key} must be one of {', '.join(choices)} (got {value!r})"
            )
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
        if key.strip() in options:  # the last would win silently
            raise BenchbdError(f"dataset {text!r}: option {key.strip()!r} is given twice")
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
        if role.strip() in roles:  # the last would win silently
            raise BenchbdError(f"dataset {text!r}: '{role.strip()}=' is given twice")
        roles[role.strip()] = source.strip()
    return first.strip(), roles


def compose(train: str, eval: str | None = None, clean: str | None = None) -> str:
    """The one-string form of a run's data (what `--eval-dataset` / `--clean-dataset` build)."""
    parts = [train] + [f"{role}={src}" for role, src in (("eval", eval), ("clean", clean)) if src]
    return "|".join(parts)


Where = str | Callable[[], str]  # where a path was read; a callable when a row's text costs


def _at(where: Where) -> str:
    where = where() if callable(where) else where
    return f" {where}" if where else ""


class DataFolder:
    """The folder a data file's paths are relative to, and the check that each path stays in it.

    The check follows links: a dataset is often downloaded or unpacked from elsewhere, and a
    link inside it (a folder `linkdir -> /home/me`, a file `a.png -> /etc/shadow`) would
    otherwise let a CSV row read any file on the machine. Both the folder and every path are
    resolved (os.path.realpath) before they are compared, so links that stay inside the folder
    keep working. Resolving a path costs a system call per path component; millions of rows
    share a few thousand folders, so folders are resolved once each and a file costs one lstat.
    """

    def __init__(self, root: Path | str) -> None:
        self.given = os.path.abspath(os.path.expanduser(root))
        self.real = os.path.realpath(self.given)
        self.path = Path(self.real)
        self._prefix = self.real if self.real.endswith(os.sep) else self.real + os.sep
        self._folders: dict[str, str] = {}

    def _inside(self, real: str) -> bool:
        return real == self.real or real.startswith(self._prefix)

    def _real_folder(self, folder: str) -> str:
        real = self._folders.get(folder)
        if real is None:
            real = self._folders[folder] = os.path.realpath(os.path.join(self.real, folder))
        return real

    def locate(self, name: str, what: str, where: Where = "") -> tuple[str, bool]:
        """(`name` relative to the folder, links resolved; whether it is an existing file).
        A BenchbdError when it leads outside the folder, by `..`, an absolute path or a link;
        `where` says where the name was read (e.g. 'on line 7 of train.csv')."""
        folder, base = os.path.split(os.path.normpath(name))
        try:
            real = os.path.join(self._real_folder(folder), base)
        except ValueError:  # a NUL byte
            raise BenchbdError(f"{what} {name!r}{_at(where)} is not a valid path") from None
        try:
            mode = os.lstat(real).st_mode
        except (OSError, ValueError):  # missing (a missing file is the caller's to count)
            mode = 0
        if stat.S_ISLNK(mode):
            real = os.path.realpath(real)
            try:
                mode = os.stat(real).st_mode
            except (OSError, ValueError):
                mode = 0
        if not self._inside(real):
            raise self._escape(name, what, where, real)
        return real[len(self._prefix) :] if real != self.real else ".", stat.S_ISREG(mode)

    def resolve(self, name: str, what: str, where: Where = "") -> Path:
        """The real path of `name`, checked as in `locate`."""
        relative, _ = self.locate(name, what, where)
        return self.path / relative

    def _escape(self, name: str, what: str, where: Where, real: str) -> BenchbdError:
        lexical = os.path.normpath(os.path.join(self.given, name))
        if lexical == self.given or lexical.startswith(self.given.rstrip(os.sep) + os.sep):
            how = (f"a link leads to {real}: copy the files into the data folder rather than "
                   "linking out of it")  # fmt: skip
        else:
            how = "a data file may only name files inside its folder"
        return BenchbdError(
            f"{what} {name!r}{_at(where)} resolves outside the data folder {self.real} ({how})"
        )


def existing(location: str, what: str) -> Path:
    path = Path(location).expanduser()
    if not path.exists():
        raise BenchbdError(f"{what} {location!r} does not exist")
    return path


def existing_file(path: Path, what: str, shown: str) -> Path:
    """`path` when it is a file; else one line naming it as the user wrote it (`shown`),
    rather than the IsADirectoryError that opening it would raise."""
    if not path.exists():
        raise BenchbdError(f"{what} {shown!r} does not exist")
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise BenchbdError(f"{what} {shown!r} is {kind}, not a file")
    return path


def option_file(root: Path, value: str, what: str) -> Path:
    """A file named in a source's options (classes=, templates=, labels=): anywhere when
    absolute, since whoever typed the path chose it; when relative, a file of the data folder,
    which must stay inside it with links followed (a downloaded data folder could otherwise
    link its classes file to a private file and have it read)."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return existing_file(path, what, value)
    resolved = DataFolder(root).resolve(value, what)
    if not (root / path).exists():
        raise BenchbdError(f"{what} {value!r} does not exist in the data folder {root}")
    return existing_file(resolved, what, value)


def not_utf8(path: Path) -> BenchbdError:
    """The error for a text file that is not UTF-8, naming the first line that is not: data
    files are read as UTF-8 everywhere, so that a run does not depend on the machine's
    locale. Found by a second, binary pass, made only when reading has failed."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            pending = decoder.getstate()[0]
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                line += (pending + block)[: exc.start].count(b"\n")
                break
            line += block.count(b"\n")
    return BenchbdError(f"{path.name} is not UTF-8 text (line {line}): save it as UTF-8")


def read_names(path: Path) -> list[str] | dict[str, str]:
    """Class names or templates from a JSON file (list, or dict folder -> name) or a text file
    (one per line, blank lines ignored). Data files are parsed, never evaluated."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise not_utf8(path) from None
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
        rest = template.replace("{}", "")
        if template.count("{}") != 1 or "{" in rest or "}" in rest:
            raise BenchbdError(
                f"template {template!r} must contain '{{}}' exactly once and no other braces"
            )
    return names
