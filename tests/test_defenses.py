"""Defenses: the CleanCLIP loss, the views it trains on, and a contract over every defense."""

from __future__ import annotations

import random
import re

import pytest
import torch
import torch.nn.functional as F
from benchbd.defenses.cleanclip import cleanclip_loss
from conftest import builtin

from benchbd.core.params import build
from benchbd.engine.augment import EDA_OPERATIONS, ImageViews, TextViews, table_synonyms
from benchbd.engine.evaluate import evaluate
from benchbd.engine.model import create_clip
from benchbd.engine.plugins import DefenseContext, defenses


def embeddings(seed: int, n: int = 6, d: int = 8) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def direct_infonce(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """-mean_i log softmax_j(scale * a_i . b_j)[i], written out by hand."""
    total = 0.0
    for i in range(len(a)):
        logits = [scale * float(a[i] @ b[j]) for j in range(len(b))]
        top = max(logits)
        log_z = top + torch.log(torch.tensor([sum(torch.exp(torch.tensor(x - top))
                                                  for x in logits)])).item()  # fmt: skip
        total += log_z - logits[i]
    return torch.tensor(total / len(a))


def test_cleanclip_loss_matches_a_direct_computation():
    i, t, ia, ta = (embeddings(k) for k in range(4))
    scale = torch.tensor(7.0)
    clip_term = (direct_infonce(i, t, 7.0) + direct_infonce(t, i, 7.0)) / 2
    inmodal_term = (direct_infonce(i, ia, 7.0) + direct_infonce(t, ta, 7.0)) / 2
    got = cleanclip_loss(i, t, ia, ta, scale, clip_weight=1.5, inmodal_weight=0.5)
    assert got.item() == pytest.approx((1.5 * clip_term + 0.5 * inmodal_term).item(), rel=1e-5)


def test_a_zero_weight_removes_its_term():
    i, t, ia, ta = (embeddings(k) for k in range(4))
    scale = torch.tensor(5.0)
    only_clip = cleanclip_loss(i, t, None, None, scale, 1.0, 0.0)
    assert only_clip.item() == pytest.approx(
        ((direct_infonce(i, t, 5.0) + direct_infonce(t, i, 5.0)) / 2).item(), rel=1e-5
    )
    only_inmodal = cleanclip_loss(i, t, ia, ta, scale, 0.0, 1.0)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    # re-pairing captions with other images changes nothing without the image-text term
    repaired = cleanclip_loss(i, t[perm], ia, ta[perm], scale, 0.0, 1.0)
    assert only_inmodal.item() == pytest.approx(repaired.item(), rel=1e-6)
    assert cleanclip_loss(i, t[perm], ia, ta[perm], scale, 1.0, 1.0).item() != pytest.approx(
        cleanclip_loss(i, t, ia, ta, scale, 1.0, 1.0).item()
    )


def test_image_views_are_seeded_and_keep_shape_dtype_range(tiny_data):
    images = tiny_data.train.images[:32]
    views = ImageViews()
    a, b, c = views(images, 1), views(images, 1), views(images, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == images.shape and a.dtype == torch.uint8
    assert not torch.equal(a, images)


def test_eda_operations(tiny_data):
    synonyms = table_synonyms(tiny_data.task.synonym_groups)
    eda = TextViews(synonyms, rate=0.1)
    caption = "a big red disc on a grainy background"
    rng = random.Random(0)
    replaced = eda.augment(caption, "synonym", rng)
    assert replaced != caption and len(replaced.split()) == len(caption.split())
    inserted = eda.augment(caption, "insert", rng)
    assert len(inserted.split()) == len(caption.split()) + 1
    swapped = eda.augment(caption, "swap", rng)
    assert sorted(swapped.split()) == sorted(caption.split()) and swapped != caption
    deleted = eda.augment("one two three four five six seven eight nine ten " * 3, "delete",
                          random.Random(1))  # fmt: skip
    assert 0 < len(deleted.split()) < 30
    captions = tiny_data.train.captions[:50]
    assert eda(captions, 3) == eda(captions, 3) and eda(captions, 3) != eda(captions, 4)
    assert set(EDA_OPERATIONS) == {"synonym", "insert", "swap", "delete"}
    assert "crimson" in synonyms("red") and re.fullmatch(r"[a-z-]+", synonyms("disc")[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", builtin(defenses))
def test_every_defense_returns_the_same_architecture(name, tiny_data):
    cls = defenses.get(name)
    params = build(cls.Params, dict(cls.test_params), name)
    clip = create_clip(seed=0)
    shapes = {k: v.shape for k, v in clip.model.state_dict().items()}
    context = DefenseContext(tiny_data.clean, tiny_data.task, seed=0)
    defended = cls(params).apply(clip, context)
    assert {k: v.shape for k, v in defended.model.state_dict().items()} == shapes
    metrics = evaluate(defended, tiny_data.test, tiny_data.task, 7, None, seed=0)
    # evaluation measures with the classifier the defense declares (its head, or zero-shot)
    assert metrics.classifier == cls.classifier
    assert (defended.head is not None) == (cls.classifier == "linear-head")


@pytest.mark.slow
def test_supervised_head_measures_ca_and_asr(tiny_data):
    from benchbd.defenses.supervised import SupervisedFinetune, SupervisedParams

    clip = create_clip(seed=0)
    context = DefenseContext(tiny_data.clean, tiny_data.task, seed=0)
    params = SupervisedParams(labelled_images=256, epochs=12.0, batch_size=32, lr=3e-3,
                              head_init="zero-shot")  # fmt: skip
    defended = SupervisedFinetune(params).apply(clip, context)
    assert defended.head is not None

    def white_corner(images, generator):
        out = images.clone()
        out[:, :, :4, :4] = 255
        return out

    metrics = evaluate(defended, tiny_data.test, tiny_data.task, 7, white_corner, seed=0)
    assert metrics.classifier == "linear-head" and metrics.asr is not None
    assert metrics.ca > 0.2  # a trained head on 256 labelled images beats chance (0.1)


def test_supervised_head_starts_random_or_as_the_zero_shot_classifier(tiny_data):
    import torch.nn.functional as F
    from benchbd.defenses.supervised import LinearHead

    from benchbd.engine.evaluate import predict, zero_shot_weights

    clip = create_clip(seed=0)
    clip.model.eval()
    weights = zero_shot_weights(clip, tiny_data.task)
    images = tiny_data.test.images[:64]
    with torch.no_grad():
        features = F.normalize(clip.model.encode_image(clip.normalize(images)), dim=-1)
        as_zero_shot = LinearHead(*weights.shape, weights, scale=10.0)(features)
    assert torch.equal(as_zero_shot.argmax(1), predict(clip, images, weights))
    first, again = LinearHead(*weights.shape, seed=3), LinearHead(*weights.shape, seed=3)
    assert torch.equal(first.linear.weight, again.linear.weight)
    assert not torch.equal(first.linear.weight, LinearHead(*weights.shape, seed=4).linear.weight)
