"""The digits source: real scans, fixed disjoint splits, captions that name their digit."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from benchbd.core.errors import BenchbdError
from benchbd.engine.data import digits
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import SOURCES, load_data
from benchbd.engine.run_config import RunConfig, default_sizes

SMALL = DataSizes(train=200, clean=60, test=100, validation=40)


@pytest.fixture(scope="module")
def data():
    return load_data("digits", default_sizes("digits"), image_size=32)


def row_ids(split) -> set[bytes]:
    """Each image's bytes: the scans are distinct, so equal bytes mean the same row."""
    return {image.numpy().tobytes() for image in split.images}


def test_registered_and_the_default_sizes_fill_the_whole_set(data):
    assert isinstance(SOURCES["digits"], digits.DigitsSource)
    assert default_sizes("digits") == DataSizes(train=0, clean=300, test=300, validation=150)
    assert default_sizes("synthetic") == DataSizes()  # the other sources keep theirs
    assert default_sizes("csv:x.csv") == DataSizes(train=0, test=0)
    sizes = [len(data.test), len(data.validation), len(data.clean), len(data.train)]
    assert sizes == [300, 150, 300, digits.SCANS - 750]
    assert data.name == "digits" and data.train_fingerprint is None


def test_splits_are_disjoint_and_have_the_requested_sizes():
    data = load_data("digits", SMALL, image_size=32)
    splits = [data.train, data.clean, data.test, data.validation]
    assert [len(s) for s in splits] == [200, 60, 100, 40]
    ids = [row_ids(s) for s in splits]
    assert sum(len(i) for i in ids) == 400  # no scan twice within a split
    assert len(set().union(*ids)) == 400  # nor in two splits


def test_labels_are_digits_and_every_class_is_tested(data):
    assert data.task.classnames == digits.CLASSNAMES == [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ]  # fmt: skip
    for split in (data.train, data.clean, data.test, data.validation):
        assert split.labels.dtype == torch.int64
        assert 0 <= int(split.labels.min()) and int(split.labels.max()) <= 9
    assert sorted(data.test.labels.unique().tolist()) == list(range(10))
    assert sorted(data.validation.labels.unique().tolist()) == list(range(10))


def test_captions_name_their_digit_and_no_other(data):
    names = {c: data.task.names_for(c) for c in data.task.classnames}
    assert "7" in names["seven"] and "nought" in names["zero"]
    words = {name: c for c, synonyms in names.items() for name in synonyms}
    captions = data.train.captions + data.clean.captions
    labels = torch.cat([data.train.labels, data.clean.labels]).tolist()
    for caption, label in zip(captions, labels, strict=True):
        tokens = re.findall(r"[a-z0-9]+", caption)
        named = {words[t] for t in tokens if t in words}
        assert named == {digits.CLASSNAMES[label]}, caption
    assert len(set(captions)) > 100  # varied text, not a label in disguise
    assert any(re.search(r"\b7\b", c) for c in captions)
    assert any("seven" in c for c in captions)


def test_zero_shot_task_has_templates_and_synonym_groups(data):
    task = data.task
    assert len(task.templates) >= 4 and all("{}" in t for t in task.templates)
    assert ["eight", "8"] in task.synonym_groups
    assert "an eight" in " ".join(task.prompts("eight")) or "a handwritten eight" in " ".join(
        task.prompts("eight")
    )


def test_images_are_scans_upscaled_to_the_model_size():
    from sklearn.datasets import load_digits

    scans = load_digits().images
    data = load_data("digits", SMALL, image_size=32)
    images = data.test.images
    assert images.dtype == torch.uint8 and tuple(images.shape) == (100, 3, 32, 32)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    for image in images[:20]:
        blocks = image[0].double().reshape(8, 4, 8, 4).mean(dim=(1, 3)).numpy()
        # find the scan it came from, then check its bright pixels land on the scan's
        match = np.abs(scans * 255 / 16 - blocks).max(axis=(1, 2)).argmin()
        bright = scans[match] >= 12
        assert np.abs(scans[match] * 255 / 16 - blocks).max() <= 1
        assert (blocks[bright] > 170).all() and (blocks[scans[match] == 0] == 0).all()
    assert int(images.max()) == 255


def test_other_image_sizes():
    data = load_data("digits", SMALL, image_size=20)
    assert tuple(data.test.images.shape[1:]) == (3, 20, 20)


def test_the_same_call_gives_the_same_bytes():
    a = load_data("digits", SMALL, image_size=32)
    b = load_data("digits", SMALL, image_size=32)
    for name in ("train", "clean", "test", "validation"):
        x, y = getattr(a, name), getattr(b, name)
        assert torch.equal(x.images, y.images) and x.captions == y.captions
        assert torch.equal(x.labels, y.labels)
    assert a.fingerprint == b.fingerprint
    other = load_data("digits", DataSizes(train=100, clean=60, test=100, validation=40), 32)
    assert other.fingerprint != a.fingerprint


def test_a_request_that_leaves_nothing_to_train_on_is_one_line():
    with pytest.raises(BenchbdError) as error:
        load_data("digits", DataSizes(train=0, clean=300, test=1600, validation=150), 32)
    message = str(error.value)
    assert "\n" not in message and "--test-images" in message and "1797" in message
    with pytest.raises(BenchbdError, match="--clean-pairs"):
        load_data("digits", DataSizes(train=0, clean=5000, test=300, validation=150), 32)


@pytest.mark.parametrize("field", ["test", "clean"])
def test_an_empty_test_or_clean_split_is_refused(field):
    sizes = DataSizes(**{**vars(SMALL), field: 0})
    with pytest.raises(BenchbdError, match="at least 1"):
        load_data("digits", sizes, 32)


def test_an_argument_is_refused():
    with pytest.raises(BenchbdError, match="takes no argument"):
        load_data("digits:3", SMALL, 32)


def test_validation_is_at_most_a_tenth_and_train_is_a_cap():
    data = load_data("digits", DataSizes(train=5000, clean=300, test=300, validation=2000), 32)
    assert len(data.validation) == digits.SCANS // 10
    assert len(data.train) == digits.SCANS - 600 - digits.SCANS // 10


def test_cli_show_draws_digits_and_run_refuses_an_eval_dataset(tmp_path):
    from typer.testing import CliRunner

    from benchbd.cli import app

    runner = CliRunner()
    png = tmp_path / "digits.png"
    shown = runner.invoke(app, ["show", "--dataset", "digits", "--target", "7",
                                "--images", "4", "--out", str(png)])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert png.stat().st_size > 0
    refused = runner.invoke(app, ["run", "--dataset", "digits", "--eval-dataset", "csv:x.csv"])
    assert refused.exit_code == 2
    assert "apply to real datasets only" in refused.output


@pytest.mark.slow
def test_a_run_on_digits_completes(tmp_path):
    from benchbd.engine.pipeline import run

    config = RunConfig(
        dataset="digits",
        attack="badnet",
        defense="none",
        target="seven",
        pretrain={"epochs": 1, "batch_size": 64},
        sizes={"train": 256, "clean": 64, "test": 100, "validation": 20},
        device="cpu",
    )
    result = run(config, out=tmp_path)
    assert result.dataset["name"] == "digits"
    assert result.target == {"index": 7, "name": "seven"}
    assert 0 <= result.metrics["before"]["ca"] <= 1
    assert len(list(tmp_path.iterdir())) == 1


def test_a_run_without_a_target_attacks_the_dataset_default():
    from benchbd.engine.run_config import RunConfig

    assert RunConfig(dataset="digits").target == "zero"
    assert RunConfig().target == "heart"
    assert RunConfig(dataset="digits", target="7").target == "7"
