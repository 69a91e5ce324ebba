"""The protocol: a validation split disjoint from test, the attacker's own data, and one
fingerprint per experiment however its numbers are written."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY
from PIL import Image

from benchbd.core.cache import fingerprint
from benchbd.core.errors import BenchbdError
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data
from benchbd.engine.grid import Grid
from benchbd.engine.pipeline import run
from benchbd.engine.planning import attacker_data, plan
from benchbd.engine.run_config import RunConfig
from benchbd.engine.train import TrainConfig

FAST = TrainConfig(epochs=1, batch_size=64)


def rows(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


def test_synthetic_has_a_labelled_validation_split_disjoint_from_the_others(tiny_data):
    validation = tiny_data.evaluation("validation")
    assert len(validation) == TINY.validation
    assert len(validation.labels.unique()) > 2
    seen = rows(validation.images)
    for other in (tiny_data.test, tiny_data.clean, tiny_data.train):
        assert not seen & rows(other.images)
    assert tiny_data.evaluation("test") is tiny_data.test


def test_a_split_is_test_or_validation_and_none_set_aside_is_a_clear_error():
    with pytest.raises(BenchbdError, match="unknown split 'valid'"):
        RunConfig(split="valid")
    data = load_data("synthetic", DataSizes(train=64, clean=16, test=40, validation=0), 32)
    with pytest.raises(BenchbdError, match="no validation split.*--validation-images"):
        data.evaluation("validation")


def test_reporting_on_validation_reuses_the_poisoned_model_under_another_result_name():
    base = RunConfig(attack="badnet", defense="none", sizes=TINY, pretrain=FAST)
    model_test, run_test = plan(base)
    model_val, run_val = plan(RunConfig(**{**base.__dict__, "split": "validation"}))
    assert model_test == model_val
    assert run_test != run_val


@pytest.mark.slow
def test_a_run_on_validation_measures_and_records_the_validation_split(tmp_path):
    sizes = DataSizes(train=256, clean=64, test=100, validation=60)
    config = RunConfig(attack="badnet", defense="none", sizes=sizes, pretrain=FAST,
                       split="validation")  # fmt: skip
    result = run(config, out=tmp_path)
    assert result.dataset["split"] == "validation"
    assert result.metrics["before"]["n_test"] == 60
    written = json.loads((tmp_path / result.filename).read_text())
    assert written["dataset"]["split"] == "validation"
    assert written["extra"]["attacker_data"] == {"source": "train", "pairs": 256}


def test_numbers_are_compared_by_value_in_every_fingerprint():
    assert fingerprint({"epochs": 8, "lr": 0.5}) == fingerprint({"epochs": 8.0, "lr": 0.5})
    assert fingerprint({"flag": True}) != fingerprint({"flag": 1})
    assert fingerprint({"seed": 2**62 + 1}) != fingerprint({"seed": 2**62})
    cli = RunConfig(attack="blended", defense="none", sizes=TINY,
                    pretrain=TrainConfig(epochs=1.0, batch_size=64),
                    attack_params={"alpha": 0.25})  # fmt: skip
    toml = Grid(["blended"], ["none"], [0], attack_params={"blended": {"alpha": 0.25}},
                sizes={"train": 1024, "clean": 256, "test": 200, "validation": 200},
                pretrain={"epochs": 1, "batch_size": 64}).cells()[0]  # fmt: skip
    python = RunConfig(attack="blended", defense="none", sizes=TINY,
                       pretrain=TrainConfig(epochs=1, batch_size=64),
                       attack_params={"alpha": 0.25, "pattern": "fresh_noise"})  # fmt: skip
    assert plan(cli) == plan(toml) == plan(python)


def test_the_attacker_trains_its_surrogate_on_the_training_pool_only(tiny_data):
    pairs, described = attacker_data(tiny_data, seed=0)
    assert described == {"source": "train", "pairs": min(5000, len(tiny_data.train))}
    train = rows(tiny_data.train.images)
    assert rows(pairs.images) <= train
    for defender_or_evaluation in (tiny_data.clean, tiny_data.test, tiny_data.validation):
        assert not rows(pairs.images) & rows(defender_or_evaluation.images)
    again, _ = attacker_data(tiny_data, seed=0)
    assert torch.equal(again.images, pairs.images)


def labelled_folder(root, n: int = 100):
    """An image folder with a labels CSV: colour squares of three classes."""
    (root / "all").mkdir(parents=True)
    colours = [(200, 30, 30), (30, 30, 200), (30, 200, 30)]
    lines = ["image,label"]
    for i in range(n):
        Image.new("RGB", (8, 8), colours[i % 3]).save(root / "all" / f"{i}.png")
        lines.append(f"all/{i}.png,{i % 3}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    (root / "names.txt").write_text("red\nblue\ngreen\n")
    return f"imagefolder:{root}?labels=labels.csv&classes=names.txt"


def test_real_sources_set_a_tenth_at_most_aside_for_validation(tmp_path):
    spec = labelled_folder(tmp_path / "d")
    data = load_data(spec, DataSizes(0, 10, 20, validation=50), 32)
    assert len(data.validation) == 10  # a tenth of 100 labelled rows, not the 50 asked for
    assert (len(data.test), len(data.clean), len(data.train)) == (20, 10, 60)
    splits = [data.train, data.clean, data.test, data.validation]
    taken = [set(s.images.rows.tolist()) for s in splits]
    for i in range(len(taken)):
        for j in range(i + 1, len(taken)):
            assert not taken[i] & taken[j]
    assert data.evaluation("validation") is data.validation
    none = load_data(spec, DataSizes(0, 10, 20, validation=0), 32)
    with pytest.raises(BenchbdError, match="no validation split"):
        none.evaluation("validation")


def test_a_separate_evaluation_set_gives_validation_rows_disjoint_from_its_test_rows(tmp_path):
    train = labelled_folder(tmp_path / "train", n=30)
    held = labelled_folder(tmp_path / "held", n=40)
    data = load_data(f"{train}|eval={held}", DataSizes(0, 5, 0, validation=100), 32)
    assert len(data.validation) == 4 and len(data.test) == 36
    assert not set(data.validation.images.rows.tolist()) & set(data.test.images.rows.tolist())


@pytest.mark.slow
def test_a_linear_head_defense_is_rated_against_a_linear_probe_of_the_poisoned_encoder(tmp_path):
    from benchbd.engine.evaluate import Metrics, defense_effectiveness

    config = RunConfig(attack="badnet", defense="cleanclip_supervised", sizes=TINY,
                       pretrain=FAST, defense_params={"epochs": 0.5, "batch_size": 64,
                                                      "labelled_images": 128})  # fmt: skip
    result = run(config, out=tmp_path)
    probe = result.metrics["before_probe"]
    assert probe["classifier"] == "linear-head" and result.extra["der_basis"] == "linear-probe"
    assert result.metrics["after"]["classifier"] == "linear-head"
    assert result.metrics["before"]["classifier"] == "zero-shot"  # the poisoned model as is
    expected = defense_effectiveness(Metrics(**probe), Metrics(**result.metrics["after"]))
    assert result.der == expected
    plain = run(RunConfig(attack="badnet", defense="none", sizes=TINY, pretrain=FAST))
    assert plain.extra["der_basis"] == "zero-shot" and "before_probe" not in plain.metrics


def test_the_poisoned_model_does_not_depend_on_the_evaluation_or_clean_split_sizes():
    base = RunConfig(attack="badnet", defense="none", sizes=TINY, pretrain=FAST)
    small = {"clean": 100, "test": 50, "validation": 30}
    other = RunConfig(attack="badnet", defense="none", pretrain=FAST,
                      sizes=DataSizes(train=TINY.train, **small))  # fmt: skip
    more = RunConfig(attack="badnet", defense="none", pretrain=FAST,
                     sizes=DataSizes(train=TINY.train + 64, **small))  # fmt: skip
    assert plan(base)[0] == plan(other)[0] != plan(more)[0]
