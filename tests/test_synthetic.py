"""The embedded dataset: deterministic, varied, cached, and a real zero-shot task."""

from __future__ import annotations

import numpy as np
import torch

from benchbd.engine.data import synthetic
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data


def test_same_seed_same_bytes_other_seed_other_bytes():
    spec = synthetic.SyntheticSpec(seed=3)
    a = synthetic.generate_split(spec, "train", 300)
    b = synthetic.generate_split(spec, "train", 300)
    c = synthetic.generate_split(synthetic.SyntheticSpec(seed=4), "train", 300)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and np.array_equal(a[2], b[2])
    assert not np.array_equal(a[0], c[0])


def test_splits_differ_from_each_other():
    spec = synthetic.SyntheticSpec()
    train = synthetic.generate_split(spec, "train", 200)[0]
    test = synthetic.generate_split(spec, "test", 200)[0]
    assert not np.array_equal(train, test)


def test_classes_attributes_and_captions_are_varied():
    images, captions, labels = synthetic.generate_split(synthetic.SyntheticSpec(), "train", 2000)
    assert len(synthetic.CLASSNAMES) >= 10 and len(synthetic.CAPTION_TEMPLATES) >= 6
    assert set(labels.tolist()) == set(range(len(synthetic.CLASSNAMES)))
    assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32)
    assert len(set(captions)) > 500  # varied text, not a label in disguise
    for caption, label in zip(captions[:300], labels[:300], strict=True):
        names = synthetic.CLASS_SYNONYMS[synthetic.CLASSNAMES[label]]
        assert any(name in caption for name in names)
        assert caption not in names


def test_load_data_caches_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHBD_CACHE", str(tmp_path))
    sizes = DataSizes(train=300, clean=50, test=40)
    first = load_data("synthetic", sizes, image_size=32)
    assert list((tmp_path / "datasets").glob("synthetic-*/train/dataset_info.json"))
    second = load_data("synthetic", sizes, image_size=32)
    assert torch.equal(first.train.images, second.train.images)
    assert first.train.captions == second.train.captions
    expected = synthetic.generate_split(synthetic.SyntheticSpec(), "train", 300)
    assert np.array_equal(first.train.images.numpy(), expected[0])
    assert first.fingerprint == second.fingerprint
    assert len(first.test) == 40 and first.task.classnames == synthetic.CLASSNAMES


def test_prompts_fill_templates_with_correct_articles(tiny_data):
    prompts = tiny_data.task.prompts("arrow")
    assert "a photo of an arrow" in prompts and len(prompts) >= 6
