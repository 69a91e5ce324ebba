"""One experiment description for every front end, and the poisoned-model cache's interface."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import TINY

from benchbd.core.errors import BenchbdError
from benchbd.engine import model_cache
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.grid import Grid
from benchbd.engine.model import create_clip, image_size
from benchbd.engine.run_config import FINETUNE_RECIPE, RunConfig
from benchbd.engine.train import TrainConfig

REAL = "csv:/data/cc3m.csv|eval=imagefolder:/data/imagenet"


def test_unset_sizes_on_real_data_mean_every_row_whoever_builds_the_config():
    python = RunConfig(dataset=REAL)
    toml = Grid(["badnet"], ["none"], [0], run={"dataset": REAL}).cells()[0]
    assert python.sizes == toml.sizes == DataSizes(train=0, test=0)
    capped = Grid(["badnet"], ["none"], [0], run={"dataset": REAL}, sizes={"train": 500})
    assert capped.cells()[0].sizes == DataSizes(train=500, test=0)
    assert RunConfig().sizes == DataSizes()  # synthetic data is generated to size


def test_finetuning_pretrained_weights_gets_the_finetuning_recipe_everywhere(tmp_path):
    weights = str(tmp_path / "w.pt")
    python = RunConfig(pretrained=weights, from_pretrained=True, pretrain={"epochs": 3})
    assert python.pretrain == replace(FINETUNE_RECIPE, epochs=3.0)
    toml = Grid(["badnet"], ["finetune"], [0], pretrain={"epochs": 3},
                run={"pretrained": weights, "from_pretrained": True}).cells()[0]  # fmt: skip
    assert toml == python
    assert RunConfig(pretrained=weights).pretrain == TrainConfig()  # used as given: no training


def test_a_setting_the_recipe_or_sizes_do_not_have_is_one_clear_error():
    with pytest.raises(BenchbdError, match="no setting 'epoch'; did you mean 'epochs'"):
        RunConfig(pretrain={"epoch": 3})
    with pytest.raises(BenchbdError, match="attack 'none' has no parameter 'alpha'"):
        RunConfig(attack="none", attack_params={"alpha": 0.1})


@pytest.mark.parametrize("name", ["benchbd-rn-tiny", "benchbd-vit-tiny"])
def test_the_image_size_read_from_a_config_is_the_built_model_s(name):
    assert image_size(name) == create_clip(name).image_size


def test_the_cache_describes_stores_and_refuses_damaged_or_other_kernel_models():
    clip = create_clip(seed=0)
    fp = "0123456789abcdef"
    assert model_cache.describe(fp) is None and not model_cache.has(fp, "portable")
    model_cache.store(fp, clip, [3, 5], threads=2, level="portable")
    record = model_cache.describe(fp)
    assert (record.poison_indices, record.threads, record.kernels) == ([3, 5], 2, "portable")
    assert model_cache.has(fp, "portable") and not model_cache.has(fp, "native")
    other = create_clip(seed=1)
    assert model_cache.lookup(fp, "portable", other).found
    loaded, stored = other.model.state_dict(), clip.model.state_dict()
    assert all(torch.equal(loaded[k], stored[k]) for k in stored)
    assert "trained with portable kernels" in model_cache.lookup(fp, "native", other).why_not
    model_cache.checkpoint_path(fp).write_bytes(b"truncated")
    assert model_cache.describe(fp) is None
    assert "damaged" in model_cache.lookup(fp, "portable", other).why_not


@pytest.mark.slow
def test_a_result_file_rebuilds_the_experiment_with_its_fingerprints(tmp_path):
    import json

    from benchbd.engine.pipeline import run
    from benchbd.engine.planning import plan

    config = RunConfig(attack="blended", defense="none", sizes=TINY, seed=3,
                       attack_params={"alpha": 0.4}, pretrain={"epochs": 1, "batch_size": 64},
                       split="validation")  # fmt: skip
    result = run(config, out=tmp_path)
    written = json.loads((tmp_path / result.filename).read_text())
    rebuilt = RunConfig.from_result(written)
    assert plan(rebuilt) == (written["poisoned_model_fingerprint"], written["fingerprint"])
    assert (rebuilt.split, rebuilt.seed, rebuilt.attack_params["alpha"]) == ("validation", 3, 0.4)
