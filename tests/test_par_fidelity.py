"""PAR against a re-derivation of its authors' code (nmndeep/PerturbAndRecover): the loss of
`losses.CLIPLoss` (the CLIP loss minus half the thresholded squared distances to the frozen
poisoned model), the trigger construction of `backdoor/utils.py` (`get_init_patch` stripes
under `blended_rs`, `create_triangle_pattern` under `blended_rs`, `blended_patt` for the
watermark) and the image views of `utils.load_clip_model` (AddGaussianNoise). Each
re-derivation below follows the authors' computation step by step, in [0, 1] floats, with the
random draws handed in so that both sides see the same ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from benchbd.attacks.stripes import draw_stripes, stripe_signs
from benchbd.attacks.triangles import Triangles, triangle_pattern
from benchbd.attacks.watermark import Watermark, blend_where_inked, watermark_pattern
from benchbd.defenses.par import PARParams, erase_boxes, noisy, par_loss

from benchbd.core.params import build
from benchbd.engine.plugins import AttackSetup


# ---- the authors' computations, re-derived -------------------------------------------------
def authors_clip_loss(outputs: dict, loss_thresh: float) -> dict:
    """losses.CLIPLoss.forward on one process: normalise, CLIP loss at a constant scale,
    squared-L2 distances summed over dimensions and averaged over rows, each replaced by 0
    above the threshold, total = clip - 0.5 * (img + text)."""
    image = F.normalize(outputs["clean_image_embed"], dim=-1, p=2)
    text = F.normalize(outputs["text_embed"], dim=-1, p=2)
    image_aug = F.normalize(outputs["aug_image_embed"], dim=-1, p=2)
    text_aug = F.normalize(outputs["aug_text_embed"], dim=-1, p=2)
    scale = outputs["logit_scale"]  # a float: `.exp().item()`
    labels = torch.arange(len(image))
    lossclip = (F.cross_entropy(scale * image @ text.t(), labels)
                + F.cross_entropy(scale * text @ image.t(), labels)) / 2  # fmt: skip

    def l2_mean(out, targets):
        return torch.mean(F.mse_loss(out, targets, reduction="none").sum(dim=1))

    def threshold_tensor(x, value, result):
        return torch.where(x > torch.tensor(value), torch.tensor(result, dtype=x.dtype), x)

    img_loss = threshold_tensor(l2_mean(image, image_aug), loss_thresh, 0.0)
    text_loss = threshold_tensor(l2_mean(text, text_aug), loss_thresh, 0.0)
    return {"total-loss": lossclip - 0.5 * (img_loss + text_loss), "img-loss": img_loss,
            "text-loss": text_loss}  # fmt: skip


def to_pil_bytes(x: torch.Tensor) -> torch.Tensor:
    """torchvision's ToPILImage on a float tensor: mul(255) then truncation to uint8."""
    return x.mul(255).byte()


def authors_stripes(image: torch.Tensor, signs: torch.Tensor, width: int,
                    noise_coeff: float) -> torch.Tensor:  # fmt: skip
    """apply_trigger(patch_type='blended_rs', patch_location='blended_rs') on one image in
    [0, 1], with get_init_patch's random_choice draws given (`signs`: (C, stripes))."""
    c, _, s = image.shape
    patch = torch.zeros([1, c, image.shape[1], s])
    for k, i in enumerate(range(0, s, width)):
        patch[0, :, :, i : i + width] += signs[:, k].view(c, 1, 1)
    noise = patch.squeeze(0)
    return torch.clip(noise_coeff * noise + (1 - noise_coeff) * image, 0, 1)


def authors_triangles(size: int, triangle_size: int) -> torch.Tensor:
    """backdoor/utils.create_triangle_pattern, loops and nearest resize as written."""
    tensor = torch.zeros((size, size))
    num = size // triangle_size
    for i in range(num):
        for j in range(num):
            for x in range(triangle_size):
                for y in range(triangle_size):
                    value = 0.4 if x >= y else 0.8
                    tensor[i * triangle_size + x, j * triangle_size + y] = value
    resized = F.interpolate(tensor[None, None], size=(size, size)).squeeze()
    return resized.unsqueeze(2).repeat(1, 1, 3).permute(2, 0, 1)  # stored as (3, S, S)


def authors_blended_patt(image: torch.Tensor, noise: torch.Tensor, coeff: float):
    mask = noise != 0
    return torch.clip(torch.where(mask, coeff * noise + (1 - coeff) * image, image), 0, 1)


def make(cls, **params):
    task = None
    return cls(build(cls.Params, params, cls.__name__.lower()), AttackSetup(0, task, 0, 0))


def images(n=4, size=32, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))  # fmt: skip


# ---- the loss --------------------------------------------------------------------------------
@pytest.mark.parametrize("far", [False, True])
def test_par_loss_and_its_gradients_match_the_authors(far):
    g = torch.Generator().manual_seed(1)
    raw = {k: torch.randn(8, 16, generator=g) for k in ("i", "t", "i0", "t0")}
    if far:  # the frozen embeddings opposite: distance 4 > tau, the terms drop out
        raw["i0"], raw["t0"] = -raw["i"].clone(), -raw["t"].clone()
    else:  # near the frozen embeddings: both terms on
        raw["i0"], raw["t0"] = raw["i"] + 0.5 * raw["i0"], raw["t"] + 0.5 * raw["t0"]
    leaves = {k: v.clone().requires_grad_(k in ("i", "t")) for k, v in raw.items()}
    theirs = authors_clip_loss({"clean_image_embed": leaves["i"], "text_embed": leaves["t"],
                                "aug_image_embed": leaves["i0"], "aug_text_embed": leaves["t0"],
                                "logit_scale": 14.0}, 2.15)  # fmt: skip
    theirs["total-loss"].backward()
    mine_leaves = {k: v.clone().requires_grad_(k in ("i", "t")) for k, v in raw.items()}
    unit = {k: F.normalize(v, dim=-1) for k, v in mine_leaves.items()}
    scale = torch.tensor(14.0, requires_grad=True)
    loss, d_image, d_text = par_loss(unit["i"], unit["t"], unit["i0"], unit["t0"], scale)
    loss.backward()
    assert loss.item() == pytest.approx(theirs["total-loss"].item(), rel=1e-6, abs=1e-6)
    for k in ("i", "t"):
        assert torch.allclose(mine_leaves[k].grad, leaves[k].grad, atol=1e-6)
    assert scale.grad is None  # the logit scale is a constant, as the authors' .item()
    if far:
        assert d_image.item() == pytest.approx(4.0) and theirs["img-loss"].item() == 0.0
    else:
        assert theirs["img-loss"].item() == pytest.approx(d_image.item(), rel=1e-6)
        assert theirs["text-loss"].item() == pytest.approx(d_text.item(), rel=1e-6)


def test_the_perturbation_pushes_the_embeddings_away_below_the_threshold():
    """Minus the distance: one gradient step on the image features moves them off the frozen
    ones (the gradient of the distance term points towards them)."""
    g = torch.Generator().manual_seed(2)
    ref = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    text = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    image = (ref + 0.1 * torch.randn(6, 8, generator=g)).requires_grad_(True)
    loss, before, _ = par_loss(image, text, ref, text, torch.tensor(1.0), weight=100.0)
    loss.backward()
    moved = image.detach() - 0.01 * image.grad
    after = (moved - ref).pow(2).sum(1).mean()
    assert after > before


# ---- the triggers ----------------------------------------------------------------------------
@pytest.mark.parametrize("width, size", [(1, 32), (3, 32), (1, 224)])
def test_stripes_match_the_authors_blended_rs(width, size):
    x = images(3, size)
    signs = stripe_signs(3, 3, size, width, torch.Generator().manual_seed(0))
    mine = draw_stripes(x, signs, 0.03, width)
    theirs = torch.stack([to_pil_bytes(authors_stripes(img.float() / 255, s, width, 0.03))
                          for img, s in zip(x, signs, strict=True)])  # fmt: skip
    # rounding against the authors' truncation: never more than one level apart
    assert (mine.int() - theirs.int()).abs().max() <= 1
    assert set(signs.unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize("size, side", [(224, 14), (32, 2), (30, 4), (336, 14)])
def test_triangle_pattern_matches_the_authors(size, side):
    mine = triangle_pattern(size, size, side)
    assert torch.equal(mine.expand(3, -1, -1), authors_triangles(size, side))


def test_triangles_blend_matches_the_authors_within_a_level():
    x = images(3, 224)
    attack = make(Triangles)
    assert attack.tile_side(224) == 14 and attack.tile_side(32) == 2
    mine = attack.apply_trigger(x, torch.Generator())
    pattern = authors_triangles(224, 14)
    theirs = torch.stack([to_pil_bytes(torch.clip(0.15 * pattern + 0.85 * img.float() / 255,
                                                  0, 1)) for img in x])  # fmt: skip
    assert (mine.int() - theirs.int()).abs().max() <= 1


@pytest.mark.parametrize("size", [32, 224])
def test_watermark_blends_like_the_authors_blended_patt(size):
    x = images(3, size)
    attack = make(Watermark)
    mine = attack.apply_trigger(x, torch.Generator())
    pattern = watermark_pattern(size, size, "Watermarked", "red", 0.875) / 255
    theirs = torch.stack([to_pil_bytes(authors_blended_patt(img.float() / 255, pattern, 0.5))
                          for img in x])  # fmt: skip
    assert (mine.int() - theirs.int()).abs().max() <= 1
    # red text: only the red channel of the lettering changes, as in the authors' pattern
    assert torch.equal(mine[:, 1:], x[:, 1:])
    assert torch.equal(blend_where_inked(x, torch.zeros(3, size, size), 0.5), x)


def test_watermark_ink_has_the_authors_extent_at_224():
    """Their stored pattern: ink 196 px wide (columns 13-208) and 23 px tall (rows 103-125),
    1,646 inked pixels. The bitmap font resized to the same width: 196 x 21, centred."""
    ink = (watermark_pattern(224, 224, "Watermarked", "red", 0.875) != 0).any(0)
    rows, cols = ink.nonzero(as_tuple=True)
    assert int(cols.max() - cols.min() + 1) == 196
    assert 19 <= int(rows.max() - rows.min() + 1) <= 23
    assert abs((rows.min() + rows.max()).item() / 2 - 114) <= 4  # theirs: centre row 114
    assert 1400 <= int(ink.sum()) <= 2200


# ---- the views -------------------------------------------------------------------------------
def test_noise_view_is_the_authors_add_gaussian_noise():
    """AddGaussianNoise(0, 0.2): (x + clip(randn * 0.2, 0, 1)).clip(0, 1), on the images
    RandomApply(p) picks; the same draws through both give the same images."""
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    mine = noisy(x, 0.5, 0.2, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    picked = torch.rand(6, generator=g) < 0.5
    randn = torch.randn(x.shape, generator=g)
    theirs = torch.stack([(img + (r * 0.2 + 0.0).clip(0, 1)).clip(0, 1) if p else img
                          for img, r, p in zip(x, randn, picked, strict=True)])  # fmt: skip
    assert torch.equal(mine, theirs)
    assert 0 < int(picked.sum()) < 6 and bool((mine >= x).all())


def test_erased_squares_have_the_authors_area_and_fit():
    params = PARParams(erase_p=1.0)
    boxes = erase_boxes(200, 224, 224, params, torch.Generator().manual_seed(0))
    sides = np.array([b[2] for b in boxes])
    areas = sides**2 / 224**2
    assert all(b is not None for b in boxes)
    assert areas.min() >= 0.004 and areas.max() <= 0.011  # 0.5-1 % (rounded sides)
    assert all(t + s <= 224 and left + s <= 224 for t, left, s in boxes)


def authors_cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0,
                             start_warmup_value=0):  # fmt: skip
    """PAR's `utils.cosine_scheduler` (commit a720440), re-derived: a linspace "warmup" from
    start_warmup_value to base_value, then a cosine from base_value to final_value."""
    warmup_iters = int(warmup_epochs * niter_per_ep)
    warmup = np.linspace(start_warmup_value, base_value, warmup_iters) if warmup_epochs > 0 \
        else np.array([])  # fmt: skip
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    cosine = final_value + 0.5 * (base_value - final_value) * (
        1 + np.cos(np.pi * iters / len(iters)))  # fmt: skip
    return np.concatenate((warmup, cosine))


@pytest.mark.parametrize("per_epoch", [2, 5, 97])
def test_linear_cosine_is_the_authors_schedule(per_epoch):
    """trigger.sh's recipe: 2 epochs, --warmup-epochs 0.5 of them (train.py multiplies by the
    epochs), --lr-start 3e-5, --lr 3e-6, --lr-end 1e-9."""
    from benchbd.engine.train import lr_at

    total = 2 * per_epoch
    theirs = authors_cosine_scheduler(3e-6, 1e-9, 2, per_epoch, warmup_epochs=0.5 * 2,
                                      start_warmup_value=3e-5)  # fmt: skip
    ours = [lr_at(step, total, 3e-5, 0, "linear-cosine") for step in range(total)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
