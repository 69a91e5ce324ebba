"""The linear-probe baseline: a logistic regression on the frozen poisoned encoder's features,
so that a defense measured with a linear head is compared with a linear head before it."""

from __future__ import annotations

import pytest
import torch
from conftest import builtin

from benchbd.core.errors import BenchbdError
from benchbd.core.params import build
from benchbd.engine.data.pairs import UNLABELLED, PairSet
from benchbd.engine.evaluate import evaluate, predict_with_head
from benchbd.engine.model import create_clip
from benchbd.engine.plugins import DefenseContext, defenses
from benchbd.engine.probe import (
    encode_images,
    labelled_rows,
    linear_probe,
    probe_features,
    probe_metrics,
)

CLASSES = 4


def coloured(per_class: int, seed: int, classes: int = CLASSES) -> PairSet:
    """Images whose class is their colour (plus noise): linearly separable for any encoder
    that keeps colour, as a randomly initialised convolutional tower does."""
    generator = torch.Generator().manual_seed(seed)
    palette = torch.tensor([[230, 30, 30], [30, 230, 30], [30, 30, 230], [230, 230, 30]])
    labels = torch.arange(classes).repeat_interleave(per_class)
    base = palette[labels].view(-1, 3, 1, 1).float()
    noise = torch.randint(-25, 26, (len(labels), 3, 32, 32), generator=generator)
    images = (base + noise).clamp(0, 255).to(torch.uint8)
    return PairSet(images, [f"class {int(k)}" for k in labels], labels)


@pytest.fixture(scope="module")
def clip():
    return create_clip(seed=0)


@pytest.fixture(scope="module")
def train_set() -> PairSet:
    return coloured(24, seed=1)


def test_the_probe_is_the_same_for_the_same_seed(clip, train_set):
    first = linear_probe(clip, train_set, CLASSES, seed=3)
    again = linear_probe(clip, train_set, CLASSES, seed=3)
    expected = first.head.state_dict()
    assert expected.keys() == again.head.state_dict().keys()
    assert all(torch.equal(expected[k], v) for k, v in again.head.state_dict().items())


def test_the_input_bundle_is_left_as_it_was(clip, train_set):
    clip.model.train()
    state = {k: v.clone() for k, v in clip.model.state_dict().items()}
    probed = linear_probe(clip, train_set, CLASSES, seed=0)
    assert clip.head is None and probed.head is not None
    assert probed.model is clip.model  # a view of the same encoder, not a copy
    assert clip.model.training  # the mode it was given back in
    assert all(torch.equal(v, clip.model.state_dict()[k]) for k, v in state.items())
    clip.model.eval()


def test_the_probe_learns_separable_classes_and_evaluate_uses_it(clip, train_set):
    from benchbd.engine.data.pairs import ZeroShotTask

    task = ZeroShotTask([f"class {k}" for k in range(CLASSES)], ["a photo of {}."])
    probed = linear_probe(clip, train_set, CLASSES, seed=0)
    metrics = evaluate(probed, coloured(16, seed=2), task, 0, None, seed=0)
    assert metrics.classifier == "linear-head"
    assert metrics.ca >= 0.95


def test_the_probe_sees_the_features_evaluation_feeds_a_head(clip, train_set):
    """Fitted on exactly what `predict_with_head` gives the head: the same normalisation."""
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, features: torch.Tensor) -> torch.Tensor:
            seen.append(features)
            return features[:, :CLASSES]

    from dataclasses import replace

    predict_with_head(replace(clip, head=Recorder()), train_set.images, batch_size=40)
    features = probe_features(clip, train_set)
    assert torch.allclose(torch.cat(seen), features, atol=1e-6)
    assert torch.allclose(features.norm(dim=1), torch.ones(len(features)), atol=1e-5)


def test_a_class_missing_from_the_labelled_images_is_never_predicted(clip, train_set):
    two = train_set.subset(torch.nonzero(train_set.labels < 2).flatten())
    probed = linear_probe(clip, two, CLASSES, seed=0)
    predictions = predict_with_head(probed, train_set.images)
    assert set(predictions.tolist()) <= {0, 1}
    assert (predictions[train_set.labels < 2] == train_set.labels[train_set.labels < 2]).all()
    one = train_set.subset(torch.nonzero(train_set.labels == 2).flatten())
    assert set(predict_with_head(linear_probe(clip, one, CLASSES, 0), one.images).tolist()) == {2}


def test_unlabelled_or_out_of_range_labels_are_refused(clip, train_set):
    for bad in (UNLABELLED, CLASSES):
        labels = train_set.labels.clone()
        labels[0] = bad
        with pytest.raises(BenchbdError, match="label"):
            linear_probe(clip, train_set.with_changes(labels=labels), CLASSES, seed=0)
    with pytest.raises(BenchbdError, match="no labelled"):
        linear_probe(clip, train_set.subset([]), CLASSES, seed=0)


def test_defenses_declare_their_classifier_and_the_probe_images(tiny_data):
    from benchbd.defenses.supervised import SupervisedFinetune, SupervisedParams

    context = DefenseContext(tiny_data.clean, tiny_data.task, seed=0)
    for name in builtin(defenses):  # a zero-shot defense needs no probe, a head defense does
        cls = defenses.get(name)
        wanted = cls(build(cls.Params, dict(cls.test_params), name)).labelled_for_probe(context)
        assert (wanted is None) == (cls.classifier == "zero-shot"), name
    defense = SupervisedFinetune(SupervisedParams(labelled_images=100))
    probe_set = defense.labelled_for_probe(context)
    trained_on = defense.labelled(context)
    assert len(probe_set) == 100
    assert torch.equal(probe_set.images, trained_on.images)
    assert torch.equal(probe_set.labels, trained_on.labels)


def test_probe_metrics_are_a_fitted_probe_measured_as_evaluate_measures_a_head(clip, train_set):
    """`--eval probe`: CA / ASR / RA of `linear_probe` through `evaluate`, on the triggered
    images of the zero-shot ASR, under the declared field names."""
    from benchbd.engine.data.pairs import ZeroShotTask
    from benchbd.engine.evaluate import EVALUATIONS

    task = ZeroShotTask([f"class {k}" for k in range(CLASSES)], ["a photo of {}."])
    test = coloured(12, seed=4)

    def to_class_zero(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return test.images[:1].expand_as(images).clone()  # every image a class-0 image

    measured = probe_metrics(clip, train_set, test, task, 0, to_class_zero, 5, 6)
    assert tuple(measured) == EVALUATIONS["probe"]
    expected = evaluate(linear_probe(clip, train_set, CLASSES, 6), test, task, 0,
                        to_class_zero, seed=5)  # fmt: skip
    assert measured == {"probe_ca": expected.ca, "probe_asr": expected.asr,
                        "probe_ra": expected.ra}  # fmt: skip
    assert measured["probe_ca"] >= 0.95 and measured["probe_asr"] == 1.0
    assert probe_metrics(clip, train_set, test, task, 0, None, 5, 6)["probe_asr"] is None


def test_the_probe_evaluation_fits_on_the_labelled_rows_only(train_set):
    labels = train_set.labels.clone()
    labels[::3] = UNLABELLED
    kept = labelled_rows(train_set.with_changes(labels=labels))
    assert torch.equal(kept.labels, train_set.labels[labels != UNLABELLED])
    assert torch.equal(kept.images, train_set.images[labels != UNLABELLED])
    unlabelled = torch.full_like(labels, UNLABELLED)
    with pytest.raises(BenchbdError, match="labelled clean images"):
        labelled_rows(train_set.with_changes(labels=unlabelled))


def test_encode_images_gives_probe_features_of_a_tensor(clip, train_set):
    assert torch.equal(encode_images(clip, train_set.images, batch_size=40),
                       probe_features(clip, train_set))  # fmt: skip


def test_a_caption_only_clean_set_refuses_eval_probe_before_training(tmp_path, monkeypatch):
    from conftest import write_folder, write_pairs

    from benchbd.core.cache import cache_dir
    from benchbd.engine.pipeline import run
    from benchbd.engine.run_config import RunConfig

    monkeypatch.setenv("BENCHBD_WORKERS", "0")
    dataset = (f"csv:{write_pairs(tmp_path / 'cc')}|eval=imagefolder:"
               f"{write_folder(tmp_path / 'val')}?classes=classes.json")  # fmt: skip
    config = RunConfig(dataset=dataset, defense="none", sizes={"clean": 8}, device="cpu",
                       pretrain={"epochs": 1, "batch_size": 8}, eval="probe")  # fmt: skip
    models = set(cache_dir().glob("models/*"))
    with pytest.raises(BenchbdError, match="^--eval probe .* labelled clean images"):
        run(config, out=tmp_path / "results")
    assert set(cache_dir().glob("models/*")) == models  # nothing trained
    assert not list((tmp_path / "results").iterdir())
