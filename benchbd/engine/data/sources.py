"""The data layer's one interface: a source named on the command line yields BenchmarkData.

`--dataset synthetic` is the embedded default and `--dataset digits` scikit-learn's bundled
handwritten digits (benchbd.engine.data.digits); real sources (CSV of image paths and captions,
Hugging Face datasets, image folders) implement the same `DataSource` protocol and are added
to SOURCES under their prefix (`csv:PATH`, `hf:NAME`, `imagefolder:PATH`).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from benchbd.core.cache import cache_dir, fingerprint, remove_stale_temporaries, temporary_prefix
from benchbd.core.errors import BenchbdError
from benchbd.core.suggest import did_you_mean
from benchbd.engine.data import synthetic, versions
from benchbd.engine.data.digits import DigitsSource
from benchbd.engine.data.pairs import BenchmarkData, PairSet, ZeroShotTask
from benchbd.engine.data.real import RealSource
from benchbd.engine.data.resized import RESIZE, at_size
from benchbd.engine.data.sizes import DataSizes

log = logging.getLogger("benchbd")
# The size the synthetic generator draws at: the default model's.
NATIVE_SIZE = synthetic.SyntheticSpec().image_size


class DataSource(Protocol):
    def load(self, argument: str, sizes: DataSizes, image_size: int) -> BenchmarkData: ...


class SyntheticSource:
    """Procedural shapes (benchbd.engine.data.synthetic), cached as Hugging Face Arrow datasets."""

    version = versions.SYNTHETIC.version  # changes when what the generator draws changes

    def load(self, argument: str, sizes: DataSizes, image_size: int) -> BenchmarkData:
        if min(sizes.train, sizes.clean, sizes.test) < 1:
            raise BenchbdError("every split needs at least one pair")
        if argument and not (argument.isascii() and argument.isdigit()):
            raise BenchbdError(
                f"synthetic:{argument}: the part after 'synthetic:' is the generator's seed, "
                "a whole number >= 0 (e.g. synthetic:1)"
            )
        seed = int(argument) if argument else 0
        # Drawn at the generator's native size and cached once for every model; a model of
        # another size reads the same images resized as batches are drawn (data.resized), so
        # memory stays bounded at any resolution.
        spec = synthetic.SyntheticSpec(seed=seed, image_size=NATIVE_SIZE)
        stored = {"source": "synthetic", "version": self.version, **asdict(spec),
                  **asdict(sizes)}  # fmt: skip
        key = dict(stored)
        if image_size != NATIVE_SIZE:  # native-size keys stay as they always were
            key |= {"image_size": image_size, "resize": RESIZE}
        fp = fingerprint(key)
        splits = {
            name: at_size(
                self._split(spec, name, getattr(sizes, name), fingerprint(stored)), image_size
            )  # fmt: skip
            for name in ("train", "clean", "test", "validation")
            if getattr(sizes, name) > 0
        }
        task = ZeroShotTask(
            classnames=list(synthetic.CLASSNAMES),
            templates=list(synthetic.ZERO_SHOT_TEMPLATES),
            synonyms={k: list(v) for k, v in synthetic.CLASS_SYNONYMS.items()},
            fix_articles=True,
            synonym_groups=synonym_groups(),
        )
        name = "synthetic" if not argument else f"synthetic:{argument}"
        train_fp = fingerprint({**key, "clean": None, "test": None, "validation": None})
        return BenchmarkData(name, splits["train"], splits["clean"], splits["test"], task, fp,
                             validation=splits.get("validation"),
                             train_fingerprint=train_fp)  # fmt: skip

    def _split(self, spec, split: str, n: int, fp: str) -> PairSet:
        import datasets

        datasets.disable_progress_bars()
        path = cache_dir() / "datasets" / f"synthetic-{fp}" / split
        remove_stale_temporaries(path.parent)
        if (path / "dataset_info.json").exists():
            try:
                pairs = read_arrow_pairs(path)
                if len(pairs) == n:
                    return pairs
            except Exception:  # datasets and pyarrow raise many types for a damaged file
                pass
            log.warning(f"cached dataset split {path.parent.name}/{split} is damaged; "
                        "generating it again")  # fmt: skip
            shutil.rmtree(path, ignore_errors=True)
        if not (path / "dataset_info.json").exists():
            images, captions, labels = synthetic.generate_split(spec, split, n)
            features = datasets.Features(
                {
                    "image": datasets.Array3D(shape=images.shape[1:], dtype="uint8"),
                    "caption": datasets.Value("string"),
                    "label": datasets.Value("int64"),
                }
            )
            table = datasets.Dataset.from_dict(
                {"image": images, "caption": captions, "label": labels}, features=features
            )
            staging = path.with_name(f"{temporary_prefix(split)}{time.time_ns()}.tmp")
            table.save_to_disk(str(staging))
            try:
                staging.rename(path)
            except OSError:  # another process cached the same split first: keep theirs
                shutil.rmtree(staging, ignore_errors=True)
        return read_arrow_pairs(path)


def read_arrow_pairs(path: Path) -> PairSet:
    """Read a cached split straight from its Arrow buffers: no per-row Python, no copies of
    the images beyond one."""
    import datasets
    import pyarrow as pa

    table = datasets.load_from_disk(str(path))
    column = table.data.column("image").combine_chunks()
    storage = column.storage
    while not pa.types.is_integer(storage.type):
        storage = storage.flatten()
    shape = table.features["image"].shape
    images = storage.to_numpy(zero_copy_only=False).reshape(len(table), *shape)
    return PairSet(
        images=torch.from_numpy(np.array(images, dtype=np.uint8)),
        captions=table.data.column("caption").to_pylist(),
        labels=torch.from_numpy(table.data.column("label").to_numpy().astype(np.int64)),
    )


def synonym_groups() -> list[list[str]]:
    """Every set of interchangeable caption words in the synthetic data: its synonym table."""
    groups = [list(names) for names in synthetic.CLASS_SYNONYMS.values()]
    groups += [list(names) for _, names, _ in synthetic.COLOURS]
    groups += [list(names) for names, _ in synthetic.SIZES]
    groups += [list(names) for names in synthetic.TEXTURES]
    groups += [list(names) for names in synthetic.BACKGROUND_WORDS.values()]
    return groups


SOURCES: dict[str, DataSource] = {
    "synthetic": SyntheticSource(),
    "digits": DigitsSource(),
    "csv": RealSource("csv"),
    "hf": RealSource("hf"),
    "imagefolder": RealSource("imagefolder"),
}


def load_data(spec: str, sizes: DataSizes, image_size: int) -> BenchmarkData:
    """'synthetic', 'synthetic:SEED', 'digits', or a real source: 'csv:PATH', 'hf:NAME[:CONFIG]',
    'imagefolder:PATH', each with '?key=value' options and '|eval=' / '|clean=' splits
    (see benchbd.engine.data.spec)."""
    kind, _, argument = spec.partition(":")
    if kind not in SOURCES:
        raise BenchbdError(f"unknown dataset {spec!r}{did_you_mean(kind, SOURCES)}")
    return SOURCES[kind].load(argument, sizes, image_size)


def cached_paths() -> list[Path]:
    return sorted((cache_dir() / "datasets").glob("*/*"))
