"""RoCLIP against its authors' computation, re-derived here from their code on small random
embeddings: the caption pool (size, random start, ring update, what it stores), the
nearest-caption match, the matched loss and the epoch schedule, and the image views against
torchvision's own operations.

The authors' code: BigML-CS-UCLA/RoCLIP at f34a929 (model/src/train.py `get_loss` and `train`,
model/src/main.py's epoch loop, model/src/memory_bank.py `NNMemoryBankModule`,
model/utils/augment_image.py), with lightly 1.2.39's `MemoryBankModule`
(lightly/loss/memory_bank.py), which its environment.yml pins.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from benchbd.defenses.roclip import (
    NO_CLASS,
    CaptionPool,
    caption_classes,
    is_matching_epoch,
    matched_loss,
    roclip_step,
)
from benchbd.defenses.roclip_views import _jitter_op, crop_boxes, gaussian_blur, resized_crops
from torchvision.transforms.v2 import functional as TF

from benchbd.engine.data.sources import load_data
from benchbd.engine.plugins import DefenseContext, defenses
from benchbd.engine.run_config import DIGITS_SIZES


class ReferenceBank:
    """lightly's MemoryBankModule with RoCLIP's NNMemoryBankModule.forward on top. The bank is
    (dim, size), columns the entries (memory_bank.py `_init_memory_bank`: randn normalised
    along dim 0); `forward` clones the bank, then enqueues if asked, then returns the bank's
    row nearest to each output (cosine of normalised output and bank rows, argmax,
    index_select of the un-normalised bank)."""

    def __init__(self, columns: torch.Tensor) -> None:
        self.bank = columns.clone()
        self.size = columns.shape[1]
        self.ptr = 0

    def enqueue(self, batch: torch.Tensor) -> None:  # `_dequeue_and_enqueue`
        b = batch.shape[0]
        if self.ptr + b >= self.size:
            self.bank[:, self.ptr :] = batch[: self.size - self.ptr].T.detach()
            self.ptr = 0
        else:
            self.bank[:, self.ptr : self.ptr + b] = batch.T.detach()
            self.ptr += b

    def __call__(self, output: torch.Tensor, update: bool) -> tuple[torch.Tensor, torch.Tensor]:
        bank = self.bank.clone().detach()
        if update:
            self.enqueue(output)
        bank = bank.t()
        similarity = torch.einsum("nd,md->nm", F.normalize(output, dim=1),
                                  F.normalize(bank, dim=1))  # fmt: skip
        index = torch.argmax(similarity, dim=1)
        return torch.index_select(bank, 0, index), index


def reference_get_loss(bank: ReferenceBank, image, text, scale, epoch: int, break_epoch: int):
    """train.py `get_loss` (one process): `epoch` is main.py's 1-based epoch."""
    index = None
    if epoch % break_epoch == 0:
        text_nn, index = bank(image, update=False)
        bank(text, update=True)
        zero = scale * image @ text.t()
        per_text = scale * text_nn @ image.t()
        per_image = per_text.t()
    else:
        per_image = scale * image @ text.t()
        per_text = per_image.t()
        zero = per_image.t()
    target = torch.arange(len(per_image))
    loss = (F.cross_entropy(per_image, target) + F.cross_entropy(per_text, target)) / 2
    return loss + 0 * F.cross_entropy(zero, target), index


def unit(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=generator), dim=-1)


def test_the_pool_starts_as_random_unit_vectors_of_its_size():
    pool = CaptionPool(20, 6, seed=3)
    assert pool.bank.shape == (20, 6) and pool.pointer == 0
    assert torch.allclose(pool.bank.norm(dim=1), torch.ones(20))
    assert (pool.classes == NO_CLASS).all()
    assert torch.equal(CaptionPool(20, 6, seed=3).bank, pool.bank)  # seeded


@pytest.mark.parametrize("size", [20, 24, 7])  # a ring that drops a batch's rest, fits, < batch
def test_five_epochs_of_steps_agree_with_the_authors_loss_and_pool(size):
    """Epochs 1-5 at K = 2, four steps of 8 each: the same loss, the same matches and the same
    pool at every step, read before the step's captions are written, touched only in matching
    epochs, the batch's overflow at the ring's end dropped."""
    generator = torch.Generator().manual_seed(0)
    pool = CaptionPool(size, 6, seed=1)
    reference = ReferenceBank(pool.bank.T)
    scale = torch.tensor(14.3)
    for epoch in range(5):
        matching = is_matching_epoch(epoch, 2)
        for _ in range(4):
            image, text = unit(8, 6, generator=generator), unit(8, 6, generator=generator)
            classes = torch.randint(0, 10, (8,), generator=generator)
            ours, matched = roclip_step(pool, image, text, scale, classes, matching)
            theirs, index = reference_get_loss(reference, image, text, scale, epoch + 1, 2)
            assert torch.allclose(ours, theirs, atol=1e-6)
            assert (matched is None) == (index is None)
            if matched is not None:
                assert torch.equal(matched.index, index)
            assert torch.allclose(pool.bank, reference.bank.T)
            assert pool.pointer == reference.ptr


def test_the_pool_keeps_each_caption_s_class_with_its_embedding():
    pool = CaptionPool(5, 4, seed=0)
    generator = torch.Generator().manual_seed(2)
    first = unit(3, 4, generator=generator)
    pool.push(first, torch.tensor([7, 8, 9]))
    pool.push(unit(3, 4, generator=generator), torch.tensor([1, 2, 3]))  # 2 fit, 1 dropped
    assert pool.classes.tolist() == [7, 8, 9, 1, 2] and pool.pointer == 0
    matched = roclip_step(pool, first, first, torch.tensor(1.0), torch.zeros(3).long(), True)[1]
    assert matched.index.tolist() == [0, 1, 2] and matched.classes.tolist() == [7, 8, 9]


def test_the_matched_loss_is_the_symmetric_cross_entropy_with_the_pool_captions():
    generator = torch.Generator().manual_seed(4)
    image, matched = unit(6, 5, generator=generator), unit(6, 5, generator=generator)
    logits = 10.0 * image @ matched.T  # rows: images; columns: their matched captions
    labels = torch.arange(6)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert torch.allclose(matched_loss(image, matched, torch.tensor(10.0)), expected)


def test_a_matching_step_gives_the_captions_zero_gradients_not_none():
    """The authors' `0 * criterion(logits_text_per_image_zero, target)`: AdamW then still
    moves the text tower by momentum and weight decay in matching steps."""
    generator = torch.Generator().manual_seed(5)
    image = unit(4, 3, generator=generator).requires_grad_()
    text = unit(4, 3, generator=generator).requires_grad_()
    pool = CaptionPool(8, 3, seed=0)
    loss, _ = roclip_step(pool, image, text, torch.tensor(5.0), torch.zeros(4).long(), True)
    loss.backward()
    assert text.grad is not None and torch.count_nonzero(text.grad) == 0
    assert torch.count_nonzero(image.grad) > 0


def test_matching_epochs_are_the_authors_every_kth_of_1_based_epochs():
    """main.py runs epochs 1..E and get_loss matches when epoch % break_epoch == 0: with 24
    epochs and K = 2 epochs 2, 4, ..., 24, the last (the evaluated model's) among them."""
    for every, epochs in ((2, 24), (2, 30), (3, 8), (1, 4)):
        ours = [e + 1 for e in range(epochs) if is_matching_epoch(e, every)]
        theirs = [e for e in range(1, epochs + 1) if e % every == 0]
        assert ours == theirs


def test_a_caption_s_class_is_the_class_word_it_names():
    data = load_data("digits", DIGITS_SIZES, 32)
    classes = caption_classes(data.train.captions, data.task)
    assert torch.equal(classes, data.train.labels)  # every digits caption names its class
    named = caption_classes(["a handwritten nought", "a picture", "the number 4"], data.task)
    assert named.tolist() == [0, NO_CLASS, 4]


def test_the_defense_trains_with_its_own_learning_rate_and_warmup():
    data = load_data("digits", DIGITS_SIZES, 32)
    context = DefenseContext(data.clean, data.task, seed=0)
    roclip = defenses.get("roclip")
    params = roclip.Params(synonyms="dataset")
    hooks = roclip(params).pretraining(data.train, context)
    assert hooks.recipe == {"lr": params.lr, "warmup_steps": params.warmup_steps}
    recipe_default = roclip.Params(lr=None, warmup_steps=None, augment=False)
    assert roclip(recipe_default).pretraining(data.train, context).recipe == {}


# The image views: each operation against torchvision's, with the same parameters.
IMAGES = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(6))


@pytest.mark.parametrize(
    "op, reference",
    [
        (0, TF.adjust_brightness),
        (1, TF.adjust_contrast),
        (2, TF.adjust_saturation),
        (3, TF.adjust_hue),
    ],  # fmt: skip
)
def test_each_colour_operation_is_torchvision_s(op, reference):
    factor = 0.07 if op == 3 else 1.3
    ours = _jitter_op(IMAGES, op, torch.full((4,), factor))
    assert torch.allclose(ours, reference(IMAGES, factor), atol=1e-5)


def test_the_blur_is_torchvision_s_at_the_authors_224_px_kernel():
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    ours = gaussian_blur(images, torch.Generator().manual_seed(1))
    sigma = torch.empty(2).uniform_(0.1, 2.0, generator=torch.Generator().manual_seed(1))
    theirs = torch.stack([TF.gaussian_blur(images[i], [21, 21], [sigma[i].item()] * 2)
                          for i in range(2)])  # fmt: skip
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_each_crop_is_torchvision_s_resized_crop():
    boxes = torch.tensor([[3, 5, 10, 20], [0, 0, 32, 32], [8, 1, 24, 17], [0, 9, 5, 4]])
    ours = resized_crops(IMAGES, boxes)
    theirs = torch.stack([TF.resized_crop(IMAGES[i], *boxes[i].tolist(), [32, 32],
                                          antialias=False) for i in range(4)])  # fmt: skip
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_crop_boxes_follow_random_resized_crop_s_scale_and_ratio():
    boxes = crop_boxes(4000, 32, torch.Generator().manual_seed(8))
    top, left, h, w = boxes.T
    assert ((top >= 0) & (left >= 0) & (top + h <= 32) & (left + w <= 32)).all()
    area = (h * w).float() / 1024
    assert area.min() >= 0.05 and area.max() <= 1.0  # 0.08 of the side squared, rounded
    ratio = (w.float() / h.float()).log()
    assert ratio.abs().max() <= math.log(4 / 3) + 0.5  # rounding at small sides
    assert 0.45 < area.mean() < 0.6  # uniform scale on [0.08, 1], the ones that fit
