"""The embedded data at a model resolution other than its native 32 px: generated once at
32 px and resized as batches are drawn, so memory stays bounded (benchmarks/
data_at_model_size.py measures the default sizes at 224 px); the 32 px data is unchanged."""

from __future__ import annotations

import json

import pytest
import torch

from benchbd.engine.data.images import is_streamed
from benchbd.engine.data.resized import resize
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data

SMALL = DataSizes(train=64, clean=32, test=20, validation=0)


def test_data_at_224_px_is_the_native_data_resized_as_rows_are_read():
    native = load_data("synthetic", SMALL, image_size=32)
    large = load_data("synthetic", SMALL, image_size=224)
    assert not is_streamed(native.train) and is_streamed(large.train)
    assert large.train.images.shape == (64, 3, 224, 224)
    rows = [0, 5, 63]
    assert torch.equal(large.train.images[rows], resize(native.train.images[rows], 224))
    assert torch.equal(large.train.images[5], resize(native.train.images[5:6], 224)[0])
    assert large.train.captions == native.train.captions
    assert large.fingerprint != native.fingerprint  # a model trained on one is not the other's
    assert large.train_key != native.train_key


def test_a_changed_row_is_kept_at_the_model_size():
    large = load_data("synthetic", SMALL, image_size=224)
    images = large.train.images.clone()
    images[[3]] = torch.full((1, 3, 224, 224), 255, dtype=torch.uint8)
    assert bool((images[3] == 255).all()) and not bool((large.train.images[3] == 255).all())


@pytest.mark.slow
def test_a_224_px_model_runs_on_small_sizes(tmp_path):
    """A 224 px model end to end: the tiny ViT's config at 224 px with 28 px patches (the
    same 64 tokens as at 32 px, so it trains in seconds on a CPU)."""
    import open_clip

    from benchbd.engine.model import image_size
    from benchbd.engine.pipeline import run
    from benchbd.engine.run_config import RunConfig

    config = json.loads(
        (__import__("pathlib").Path(__file__).resolve().parent.parent
         / "benchbd/engine/model_configs/benchbd-vit-tiny.json").read_text()
    )  # fmt: skip
    config["vision_cfg"] |= {"image_size": 224, "patch_size": 28}
    (tmp_path / "test-vit-224.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "test-vit-224.json")
    assert image_size("test-vit-224") == 224
    result = run(
        RunConfig(attack="badnet", defense="finetune", model="test-vit-224", device="cpu",
                  sizes={"train": 96, "clean": 32, "test": 20, "validation": 0},
                  pretrain={"epochs": 1, "batch_size": 32},
                  defense_params={"epochs": 1, "batch_size": 32}),
        out=tmp_path / "out",
    )  # fmt: skip
    assert result.model == "test-vit-224"
    assert 0 <= result.metrics["after"]["ca"] <= 1
    assert result.poison["count"] == 3 and result.dataset["sizes"]["train"] == 96
