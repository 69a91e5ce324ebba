"""`hf:NAME[:CONFIG]`: a Hugging Face `datasets` dataset as a real source.

NAME is a hub name (loaded from the local `datasets` cache or downloaded) or a folder written
by `save_to_disk` (loaded with `load_from_disk`). Images are read undecoded from the Arrow
table (bytes) and decoded by benchbd's own resize-and-crop, in the loader workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchbd.core.errors import BenchbdError
from benchbd.core.network import no_network
from benchbd.core.suggest import did_you_mean
from benchbd.engine.data.images import decode
from benchbd.engine.data.listings import Listing
from benchbd.engine.data.spec import (
    DataFolder,
    SourceSpec,
    option_file,
    read_names,
    templates_from,
)

OPTIONS = {"split", "image", "caption", "label", "classes", "templates"}
EVAL_SPLITS = ("test", "validation", "val")


@dataclass
class ArrowImages:
    """One image column of a dataset, read as encoded bytes (or a file inside `folder`)."""

    table: object  # datasets.Dataset holding only the image column, decode=False
    column: str
    folder: DataFolder | None

    def read(self, row: int, size: int) -> torch.Tensor:
        value = self.table[row][self.column]
        name = f"row {row}"
        if value is None:
            raise BenchbdError(f"hf: {name} has no image")
        if value.get("bytes"):
            return decode(value["bytes"], size, name)
        if value.get("path") and self.folder is not None:
            path = self.folder.resolve(value["path"], "image path", f"in {name}")
            return decode(path, size, value["path"])
        raise BenchbdError(f"hf: {name} has neither image bytes nor a readable path")


def check_stored_paths(table, column: str, folder: DataFolder | None) -> None:
    """Rows whose image is a stored file path rather than bytes (older `datasets` versions
    and other writers leave them so): each must be a file inside the dataset's folder, links
    followed. Checked when the data is loaded, not when a batch reads the row after
    pretraining; the bytes themselves are never read here."""
    import pyarrow as pa

    offset = 0
    for chunk in table.data.column(column).chunks:
        if pa.types.is_struct(chunk.type):  # {bytes, path}; anything else, read() reports
            fields = chunk.flatten()
            stored = fields[chunk.type.get_field_index("bytes")]
            paths = fields[chunk.type.get_field_index("path")]
            for i in np.flatnonzero(stored.is_null().to_numpy(zero_copy_only=False)):
                stored_path(paths[int(i)].as_py(), offset + int(i), folder)
        offset += len(chunk)


def stored_path(name: str | None, row: int, folder: DataFolder | None) -> None:
    """One row stored as a path: a file inside `folder`, or a one-line error."""
    if not name:
        raise BenchbdError(f"hf: row {row} has no image")
    if folder is None:
        raise BenchbdError(f"hf: row {row} stores its image as a file path ({name!r}), which "
                           "needs the dataset's own folder: save it with save_to_disk, the "
                           "files inside it, and pass that folder")  # fmt: skip
    if not folder.locate(name, "image path", f"in row {row}")[1]:
        raise BenchbdError(f"hf: image file {name!r} in row {row} does not exist in "
                           f"{folder.real}")  # fmt: skip


def _load(spec: SourceSpec):
    """(dataset or dataset dict, local folder or None) for NAME[:CONFIG]."""
    import datasets

    datasets.disable_progress_bars()
    folder = Path(spec.location).expanduser()
    if folder.is_dir():
        try:
            return datasets.load_from_disk(str(folder)), folder.resolve()
        except (FileNotFoundError, ValueError) as exc:
            raise BenchbdError(f"hf: {spec.location!r} is not a saved dataset ({exc})") from None
    name, _, config = spec.location.partition(":")
    offline = no_network("huggingface.co")
    try:
        with hub_offline(offline):
            return datasets.load_dataset(name, config or None), None
    except Exception as exc:  # the hub raises many kinds; one line says which
        if offline:
            raise BenchbdError(
                f"hf: {spec.location!r} is neither a local folder nor in the local datasets "
                "cache, and there is no network to download it: save it with save_to_disk "
                "where there is, and pass hf:/path/to/that/folder"
            ) from None
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BenchbdError(
            f"hf: cannot load dataset {spec.location!r} (not a local folder; from the hub: "
            f"{first[:200]})"
        ) from None


@contextlib.contextmanager
def hub_offline(offline: bool):
    """Without a network, read the local datasets cache only, as HF_HUB_OFFLINE=1 would
    (instead of a minute of retries). Both libraries read the flag at import, hence the
    scoped switch."""
    import datasets.config
    import huggingface_hub.constants

    if not offline:
        yield
        return
    saved = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


def _pick_split(spec: SourceSpec, loaded) -> tuple[object, str | None, SourceSpec | None]:
    """The split to read and, for a dataset dict, the spec of its own evaluation split."""
    import datasets

    if isinstance(loaded, datasets.Dataset):
        if "split" in spec.options:  # ignoring it would read rows the user did not ask for
            raise BenchbdError(f"hf: {spec.location!r} has no splits: drop "
                               f"split={spec.options['split']}")  # fmt: skip
        return loaded, None, None
    splits = list(loaded)
    split = spec.get("split", "train" if "train" in splits else splits[0])
    if split not in loaded:
        raise BenchbdError(f"hf: no split {split!r}{did_you_mean(split, splits)} "
                           f"(splits: {', '.join(splits)})")  # fmt: skip
    held_out = None
    if "split" not in spec.options:
        for name in EVAL_SPLITS:
            if name in loaded and name != split:
                held_out = SourceSpec(spec.kind, spec.location, {**spec.options, "split": name})
                break
    return loaded[split], split, held_out


def _column(spec: SourceSpec, table, option: str, default: str | None, required: bool):
    columns = list(table.column_names)
    name = spec.options.get(option, default)
    if name is None or name not in columns:
        if not required and option not in spec.options:
            return None
        raise BenchbdError(f"hf: no {option} column {name!r}{did_you_mean(str(name), columns)} "
                           f"(columns: {', '.join(columns)}; choose with {option}=)")  # fmt: skip
    return name


def _is_text(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _checked_column(table, name: str, what: str, kind: Callable[[object], bool], expected: str):
    """A column as Arrow data, checked when the data is loaded: of the `kind` of Arrow type
    the run needs, and never empty (None), which would otherwise surface mid-training."""
    column = table.data.column(name)
    if not kind(column.type):
        raise BenchbdError(f"hf: {what} column {name!r} holds {column.type}, not {expected}")
    if column.null_count:
        first = int(np.flatnonzero(column.is_null().to_numpy())[0])
        rows = f"{column.null_count} row{'s' if column.null_count > 1 else ''}"
        raise BenchbdError(f"hf: {what} column {name!r} is empty in {rows} (first: row {first}): "
                           "fill or drop those rows")  # fmt: skip
    return column


def hf_listing(spec: SourceSpec) -> Listing:
    import datasets
    import pyarrow as pa

    spec.check_options(OPTIONS)
    loaded, folder = _load(spec)
    table, split, held_out = _pick_split(spec, loaded)
    features = table.features
    first_image = next((k for k, v in features.items() if isinstance(v, datasets.Image)), "image")
    image = _column(spec, table, "image", first_image, required=True)
    if not isinstance(features[image], datasets.Image):
        raise BenchbdError(f"hf: column {image!r} is not an image column ({features[image]})")
    caption = _column(spec, table, "caption", "caption", required=False)
    label = _column(spec, table, "label", "label", required=False)
    if caption is None and label is None:
        raise BenchbdError(f"hf: {spec.location!r} has neither a caption nor a label column; "
                           "name one with caption= or label=")  # fmt: skip
    root = folder or Path.cwd()
    labels = classnames = None
    if label is not None:
        column = _checked_column(table, label, "label", pa.types.is_integer,
                                 "class indices: encode it with class_encode_column")  # fmt: skip
        labels = np.asarray(column.to_numpy(), np.int64)
        feature = features[label]
        ids = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
        if "classes" in spec.options:
            names = read_names(option_file(root, spec.options["classes"], "classes file"))
            if isinstance(names, dict) and not ids:
                raise BenchbdError("hf: integer labels need a classes file that is a list")
            classnames = [names.get(i, i) for i in ids] if isinstance(names, dict) else names
        else:
            classnames = ids
        if classnames is None:
            raise BenchbdError(f"hf: label column {label!r} has no class names; "
                               "give classes=FILE")  # fmt: skip
        unlabelled = np.flatnonzero(labels < 0)  # ClassLabel's -1: a row with no class
        if unlabelled.size:
            rows = f"{unlabelled.size} row{'s' if unlabelled.size > 1 else ''}"
            raise BenchbdError(f"hf: label column {label!r} has no class (-1) in {rows} (first: "
                               f"row {unlabelled[0]}): use a labelled split (split=)")  # fmt: skip
        if labels.size and labels.max() >= len(classnames):
            raise BenchbdError(f"hf: labels run outside the {len(classnames)} class names")
    images = table.select_columns([image]).cast_column(image, datasets.Image(decode=False))
    data_folder = DataFolder(folder) if folder is not None else None
    check_stored_paths(images, image, data_folder)
    captions = None
    if caption is not None:
        captions = _checked_column(table, caption, "caption", _is_text, "text").to_pylist()
    return Listing(
        name=spec.text(),
        reader=ArrowImages(images, image, data_folder),
        size=len(table),
        key={
            "kind": "hf",
            "location": spec.location,
            "split": split,
            "options": spec.options,
            "fingerprint": getattr(table, "_fingerprint", None),
        },
        captions=captions,
        labels=labels,
        classnames=classnames,
        templates=templates_from(spec, root) if labels is not None else [],
        held_out=held_out,
    )
