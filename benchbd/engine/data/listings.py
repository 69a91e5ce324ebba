"""The three real sources, each read into a `Listing`: where every row's image is, plus its
caption or its class. Nothing is decoded here; `engine.data.real` turns listings into splits.

- csv:PATH          CleanCLIP's format: an image path (relative to the CSV's folder) and a caption
- hf:NAME[:CONFIG]  a Hugging Face dataset (hub name or a `save_to_disk` folder)
- imagefolder:PATH  class folders, or a labels CSV; class names and templates from files
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchbd.core.cache import file_hash
from benchbd.core.errors import BenchbdError
from benchbd.core.suggest import did_you_mean
from benchbd.engine.data.images import ImageReader, decode
from benchbd.engine.data.spec import (
    SEPARATORS,
    DataFolder,
    SourceSpec,
    existing,
    existing_file,
    not_utf8,
    option_file,
    read_names,
    templates_from,
)

log = logging.getLogger("benchbd.engine.data")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


@dataclass
class Listing:
    """One source's rows. `captions` for pair sets, `labels` + `classnames` for labelled sets
    (either or both). `key` identifies the content for cache fingerprints."""

    name: str
    reader: ImageReader
    size: int
    key: dict
    captions: list[str] | None = None
    labels: np.ndarray | None = None
    classnames: list[str] | None = None
    templates: list[str] = field(default_factory=list)
    held_out: SourceSpec | None = None  # the source's own evaluation split, when it has one
    missing: int = 0


def separator(spec: SourceSpec) -> str:
    sep = spec.get("sep", ",")
    sep = SEPARATORS.get(sep, "\t" if sep == "\\t" else sep)
    if len(sep) != 1:
        raise BenchbdError(f"{spec.kind}: sep must be one character or {', '.join(SEPARATORS)}")
    return sep


def read_table(path: Path, sep: str, columns: list[str]) -> list[list[str]]:
    """The named columns of a delimited file, as lists of strings, then each row's line
    number (for errors that name a row). Text that is not UTF-8 and the csv module's own
    errors (a field over its size limit) are one line naming the place."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=sep)
        try:
            return _columns(reader, path, columns)
        except UnicodeDecodeError:
            raise not_utf8(path) from None
        except csv.Error as exc:
            raise BenchbdError(f"{path.name}, line {reader.line_num}: {exc}") from None


def _columns(reader, path: Path, columns: list[str]) -> list[list[str]]:
    header = next(reader, None)
    if not header:
        raise BenchbdError(f"{path.name} is empty")
    header = [h.strip() for h in header]
    for column in columns:
        if column not in header:
            raise BenchbdError(
                f"{path.name}: no column {column!r}{did_you_mean(column, header)} "
                f"(columns: {', '.join(header)}; set the delimiter with sep=)"
            )
    where = [header.index(c) for c in columns]
    out: list[list[str]] = [[] for _ in columns]
    lines: list[int] = []
    for row in reader:
        if not row:
            continue
        if len(row) < len(header):
            raise BenchbdError(f"{path.name}, line {reader.line_num}: {len(row)} fields, "
                               f"expected {len(header)}")  # fmt: skip
        for values, i in zip(out, where, strict=True):
            values.append(row[i])
        lines.append(reader.line_num)
    return [*out, lines]


def line_of(lines: list[int], path: Path) -> Callable[[int], str]:
    """Row i of a table -> 'on line N of NAME', for an error that names a row."""
    return lambda i: f"on line {lines[i]} of {path.name}"


def check_files(
    spec: SourceSpec, root: Path, names: list[str], where: Callable[[int], str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Image paths relative to `root` with links resolved (each checked to stay inside it), and
    the rows whose file exists. `where(i)` says where row i was read, for the error that names
    a path leading out. Missing files are counted and logged; `missing=error` (default) stops,
    `missing=skip` drops them."""
    skip = spec.flag("missing", ("error", "skip")) == "skip"  # checked even when none are
    folder = DataFolder(root)
    paths, present = [], np.zeros(len(names), bool)
    for i, name in enumerate(names):
        path, present[i] = folder.locate(name, "image path", where and (lambda i=i: where(i)))
        paths.append(path)
    missing = int((~present).sum())
    if missing:
        first = paths[int(np.argmin(present))]
        message = (f"{spec.kind}:{spec.location}: {missing} of {len(paths)} image files are "
                   f"missing (first: {first})")  # fmt: skip
        if not skip:
            raise BenchbdError(f"{message}; add ?missing=skip to run without them")
        log.warning("%s; skipped", message)
    return paths, np.flatnonzero(present)


@dataclass(frozen=True)
class FileReader:
    """Image files named relative to a root folder (paths checked to stay inside it)."""

    root: Path
    paths: list[str]

    def read(self, row: int, size: int) -> torch.Tensor:
        return decode(self.root / self.paths[row], size, self.paths[row])


def csv_listing(spec: SourceSpec) -> Listing:
    spec.check_options({"image", "caption", "sep", "missing"})
    path = existing_file(Path(spec.location).expanduser(), "CSV file", spec.location)
    image_col, caption_col = spec.get("image", "image"), spec.get("caption", "caption")
    names, captions, lines = read_table(path, separator(spec), [image_col, caption_col])
    if not names:
        raise BenchbdError(f"{path.name} has a header but no rows")
    root = path.parent
    paths, keep = check_files(spec, root, names, line_of(lines, path))
    key = {"kind": "csv", "file": file_hash(path), "options": spec.options, "rows": len(keep)}
    return Listing(
        name=spec.text(),
        reader=FileReader(root.resolve(), [paths[i] for i in keep]),
        size=len(keep),
        key=key,
        captions=[captions[i] for i in keep],
        missing=len(paths) - len(keep),
    )


def class_names(spec: SourceSpec, root: Path, folders: list[str]) -> list[str]:
    """Human-readable names for class ids: a classes file (list in id order, or an object
    id -> name), else the ids with underscores as spaces."""
    if "classes" not in spec.options:
        return [f.replace("_", " ") for f in folders]
    names = read_names(option_file(root, spec.options["classes"], "classes file"))
    if isinstance(names, dict):
        absent = [f for f in folders if f not in names]
        if absent:
            raise BenchbdError(f"classes file has no name for {absent[0]!r}")
        return [names[f] for f in folders]
    if len(names) != len(folders):
        raise BenchbdError(f"classes file lists {len(names)} names for {len(folders)} classes")
    return names


def imagefolder_listing(spec: SourceSpec) -> Listing:
    spec.check_options({"classes", "templates", "labels", "image", "label", "sep", "missing"})
    root = existing(spec.location, "image folder")
    if not root.is_dir():
        raise BenchbdError(f"imagefolder: {spec.location!r} is not a folder")
    if "labels" in spec.options:
        table = option_file(root, spec.options["labels"], "labels file")
        image_col, label_col = spec.get("image", "image"), spec.get("label", "label")
        names, raw, lines = read_table(table, separator(spec), [image_col, label_col])
        if not names:
            raise BenchbdError(f"{table.name} has a header but no rows")
        where = line_of(lines, table)
        ids = sorted(set(raw), key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else v))
        if all(v.isdigit() for v in raw) and "classes" in spec.options:
            classnames = class_names(spec, root, [str(i) for i in range(1 + max(map(int, ids)))])
            labels = [int(v) for v in raw]
        else:
            classnames = class_names(spec, root, ids)
            position = {v: i for i, v in enumerate(ids)}
            labels = [position[v] for v in raw]
        key_files = {"labels": file_hash(table)}
    else:
        folders = sorted(d.name for d in root.iterdir() if d.is_dir())
        if not folders:
            raise BenchbdError(f"imagefolder: {spec.location!r} has no class folders")
        names, labels = [], []
        for label, folder in enumerate(folders):
            for dirpath, _, files in sorted(os.walk(root / folder)):
                for file in sorted(files):
                    if Path(file).suffix.lower() in IMAGE_SUFFIXES:
                        names.append(os.path.relpath(os.path.join(dirpath, file), root))
                        labels.append(label)
        if not names:
            raise BenchbdError(f"imagefolder: no image files under {spec.location!r}")
        classnames = class_names(spec, root, folders)
        key_files = {"files": hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]}
        where = None  # found by walking the folder: the path says where
    paths, keep = check_files(spec, root, names, where)
    label_array = np.asarray(labels, dtype=np.int64)[keep]
    return Listing(
        name=spec.text(),
        reader=FileReader(root.resolve(), [paths[i] for i in keep]),
        size=len(keep),
        key={
            "kind": "imagefolder",
            "root": str(root.resolve()),
            "options": spec.options,
            "rows": len(keep),
            **key_files,
        },  # fmt: skip
        labels=label_array,
        classnames=classnames,
        templates=templates_from(spec, root),
        missing=len(paths) - len(keep),
    )
