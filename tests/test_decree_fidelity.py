"""DECREE (Feng et al., CVPR 2023) against its authors' computation.

`authors_decree` below is an independent re-derivation of the trigger inversion in
GiantSeaweed/DECREE's main.py (`main`, the loop from "### initialize trigger" to the early
stop) and utils.py (`compute_self_cos_sim`, `epsilon`), in the authors' layout: images and the
pattern height x width x channels on 0-255, the mask a 2-D variable repeated over the channels,
each image normalised one by one (`test_transform`) in float64 and cast to float32 for the
encoder, the loss in the encoder's float32 plus the float64 mask norm. It takes the settings
benchbd's detector states (docs/fidelity.md: the 32-pixel encoders' schedule, a capped epoch
count) and the same random draws (the initial mask and pattern, each epoch's batch order: the
harness's seeding, where the authors' code draws from the global generators). The encoder is
the model's own call (`encode_image` on the channels-last input the model takes).

benchbd's `Decree.detect` must then follow the same trajectory: the same best mask norm, steps
and epochs, to float64 round-off. The pieces (parameterisation, trigger, loss, lambda schedule,
learning-rate steps) are compared on their own too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from benchbd.defenses.decree import (
    Decree,
    LambdaSchedule,
    decree_loss,
    epoch_lr,
    squash,
    stamp,
    to_raw,
)

from benchbd.core.params import build
from benchbd.engine.data.pairs import PairSet, ZeroShotTask
from benchbd.engine.model import ClipBundle, create_clip
from benchbd.engine.model_detection import DetectionContext


def epsilon() -> float:
    return 1e-7  # utils.py


def authors_self_cos_sim(mat_a: torch.Tensor) -> torch.Tensor:
    """utils.py compute_self_cos_sim: the mean of the off-diagonal cosine similarities."""
    ele_size = mat_a.shape[0]
    mat_a = F.normalize(mat_a, dim=-1)
    sim_matrix = torch.mm(mat_a, mat_a.t())
    sim_mask = (torch.ones_like(sim_matrix) - torch.eye(ele_size)).bool()
    sim_matrix = sim_matrix.masked_select(sim_mask).view(ele_size, -1)
    return torch.mean(sim_matrix)


def authors_lr(epoch: int, lr: float, thres=(30, 50)) -> float:
    """main.py adjust_learning_rate (the cifar10/stl10 thresholds)."""
    return lr if epoch < thres[0] else 0.1 if epoch < thres[1] else 0.05


def authors_trigger(raw_mask_2d, raw_patch_hwc, clean_hwc):
    """main.py: the mask and patch through tanh, clipped; the triggered batch, clipped."""
    train_mask_3d = raw_mask_2d.unsqueeze(2).repeat(1, 1, 3)
    train_mask_tanh = torch.tanh(train_mask_3d) / (2 - epsilon()) + 0.5
    train_patch_tanh = (torch.tanh(raw_patch_hwc) / (2 - epsilon()) + 0.5) * 255
    train_mask_tanh = torch.clip(train_mask_tanh, min=0, max=1)
    train_patch_tanh = torch.clip(train_patch_tanh, min=0, max=255)
    bd = (1 - train_mask_tanh) * clean_hwc + train_mask_tanh * train_patch_tanh
    return torch.clip(bd, min=0, max=255), train_mask_tanh


def authors_decree(clip, images_chw, mask0, pattern0_chw, orders, cfg):
    """main.py's loop. Returns (regular_best, steps, epochs run)."""
    mean, std = clip.mean.double().view(3, 1, 1), clip.std.double().view(3, 1, 1)
    clean_all = images_chw.permute(0, 2, 3, 1).to(torch.float64)  # (N, H, W, 3)
    train_mask_2d = torch.arctanh((mask0 - 0.5) * (2 - epsilon()))
    train_patch = torch.arctanh((pattern0_chw.permute(1, 2, 0) - 0.5) * (2 - epsilon()))
    train_mask_2d.requires_grad = True
    train_patch.requires_grad = True
    optimizer = torch.optim.Adam(params=[train_mask_2d, train_patch], lr=cfg["lr"],
                                 betas=(0.5, 0.9))  # fmt: skip
    init_loss_lambda = 1e-3
    loss_lambda, adaptor_lambda, patience = init_loss_lambda, 5.0, cfg["patience"]
    succ_threshold = cfg["threshold"]
    regular_best = 1 / epsilon()
    early_stop_reg_best, early_stop_cnt = regular_best, 0
    early_stop_patience = cfg["early_stop_patience"]
    adaptor_up_cnt = adaptor_down_cnt = 0
    lambda_set_cnt, lambda_set_patience = 0, 2 * patience
    lambda_min = cfg["lambda_min"]
    steps = 0
    for e in range(cfg["epochs"]):
        for group in optimizer.param_groups:
            group["lr"] = authors_lr(e, cfg["lr"])
        cosines = []
        for start in range(0, len(clean_all), cfg["batch_size"]):
            clean_x_batch = clean_all[orders[e][start : start + cfg["batch_size"]]]
            bd_x_batch, train_mask_tanh = authors_trigger(train_mask_2d, train_patch,
                                                          clean_x_batch)  # fmt: skip
            bd_input = torch.stack([(bd_x_batch[i].permute(2, 0, 1) / 255.0 - mean) / std
                                    for i in range(bd_x_batch.shape[0])])  # fmt: skip
            bd_input = bd_input.to(dtype=torch.float)
            bd_out = clip.model.encode_image(bd_input.contiguous(memory_format=torch.channels_last))
            loss_cos = -authors_self_cos_sim(bd_out)
            loss_reg = torch.sum(torch.abs(train_mask_tanh))
            loss = loss_cos + loss_reg * loss_lambda
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            cosines.append(loss_cos.detach())
            if torch.abs(loss_cos) > succ_threshold and loss_reg < regular_best:
                regular_best = loss_reg.item()
            if regular_best < 1 / epsilon():
                if regular_best >= early_stop_reg_best:
                    early_stop_cnt += 1
                else:
                    early_stop_cnt = 0
            early_stop_reg_best = min(regular_best, early_stop_reg_best)
            if loss_lambda < lambda_min and torch.abs(loss_cos) > succ_threshold:
                lambda_set_cnt += 1
                if lambda_set_cnt > lambda_set_patience:
                    loss_lambda = init_loss_lambda
                    adaptor_up_cnt, adaptor_down_cnt = 0, 0
            else:
                lambda_set_cnt = 0
            if torch.abs(loss_cos) > succ_threshold:
                adaptor_up_cnt += 1
                adaptor_down_cnt = 0
            else:
                adaptor_down_cnt += 1
                adaptor_up_cnt = 0
            if adaptor_up_cnt > patience:
                if loss_lambda < 1e5:
                    loss_lambda *= adaptor_lambda
                adaptor_up_cnt = 0
            elif adaptor_down_cnt > patience:
                if loss_lambda >= lambda_min:
                    loss_lambda /= adaptor_lambda
                adaptor_down_cnt = 0
        loss_cos_e = torch.mean(torch.stack(cosines))
        if torch.abs(loss_cos_e) > succ_threshold and early_stop_cnt > early_stop_patience:
            return regular_best, steps, e + 1
    return regular_best, steps, cfg["epochs"]


def test_parameterisation_and_trigger_match_the_authors():
    g = torch.Generator().manual_seed(0)
    mask0 = torch.rand(8, 8, generator=g, dtype=torch.float64)
    pattern0 = torch.rand(3, 8, 8, generator=g, dtype=torch.float64)
    images = torch.randint(0, 256, (4, 3, 8, 8), generator=g).double()
    raw_mask, raw_pattern = to_raw(mask0), to_raw(pattern0)
    assert torch.allclose(squash(raw_mask), mask0, atol=1e-6)  # the inverse holds
    ours = stamp(images, squash(raw_mask), squash(raw_pattern) * 255.0)
    theirs, mask3d = authors_trigger(raw_mask, raw_pattern.permute(1, 2, 0),
                                     images.permute(0, 2, 3, 1))  # fmt: skip
    assert torch.allclose(ours, theirs.permute(0, 3, 1, 2), rtol=0, atol=1e-10)

    features = torch.randn(6, 16, generator=g)
    loss, cosine, norm = decree_loss(features, squash(raw_mask), 0.01)
    assert torch.allclose(cosine, -authors_self_cos_sim(features))
    assert math.isclose(norm.item(), torch.sum(torch.abs(mask3d)).item(), rel_tol=1e-12)
    assert math.isclose(loss.item(), (cosine + 0.01 * norm).item(), rel_tol=1e-12)


def test_lambda_and_learning_rate_schedules_match_the_authors():
    params = build(Decree.Params, {}, owner="decree")
    rng = np.random.default_rng(1)
    schedule = LambdaSchedule(params)
    lam, up, down, reset = 1e-3, 0, 0, 0
    for success in rng.random(400) < 0.45:  # long runs both ways: up, down and resets happen
        if lam < params.lambda_min and success:
            reset += 1
            if reset > 2 * params.patience:
                lam, up, down = 1e-3, 0, 0
        else:
            reset = 0
        up, down = (up + 1, 0) if success else (0, down + 1)
        if up > params.patience:
            lam, up = (lam * 5 if lam < 1e5 else lam), 0
        elif down > params.patience:
            lam, down = (lam / 5 if lam >= params.lambda_min else lam), 0
        assert schedule.step(bool(success)) == lam
    assert [epoch_lr(params, e) for e in range(60)] == [authors_lr(e, 0.5) for e in range(60)]


class LinearEncoder(torch.nn.Module):
    """A small encoder whose embeddings differ from image to image (a randomly initialised CLIP
    maps every image to nearly one embedding, so a trigger is found at once): the inversion
    then has to work, and raises and lowers lambda and stops early on the way."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.image = torch.nn.Linear(3 * size * size, 16)
        self.text = torch.nn.Embedding(100, 16)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.image(x.flatten(1)))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text(tokens).mean(1)


def linear_clip(seed: int) -> ClipBundle:
    torch.manual_seed(seed)
    def tokenizer(captions):
        return torch.tensor([[len(c) % 100, sum(map(ord, c)) % 100] for c in captions])

    half = torch.full((1, 3, 1, 1), 0.5)
    return ClipBundle("linear", LinearEncoder(8), tokenizer, half, half / 2, 8)


CASES = [  # (encoder, seed, threshold, early-stop patience, epochs)
    ("clip", 0, 0.9, 3, 6), ("clip", 3, 0.9, 3, 6),
    ("linear", 0, 0.9, 3, 40), ("linear", 3, 0.9, 3, 40), ("linear", 0, 0.99, 3, 40),
    ("linear", 3, 0.99, 3, 40), ("linear", 5, 0.999, 2, 15),
]  # fmt: skip


@pytest.mark.parametrize(("encoder", "seed", "threshold", "early", "epochs"), CASES)
def test_the_whole_inversion_follows_the_authors_trajectory(encoder, seed, threshold, early,
                                                            epochs):  # fmt: skip
    clip = create_clip(seed=seed) if encoder == "clip" else linear_clip(seed)
    clip.model.eval()
    size = clip.image_size
    g = torch.Generator().manual_seed(100 + seed)
    images = torch.randint(0, 256, (20, 3, size, size), generator=g, dtype=torch.uint8)
    task = ZeroShotTask(["cat", "dog"], ["a photo of a {}."])
    pairs = PairSet(images, ["x"] * 20, torch.zeros(20, dtype=torch.long))
    settings = {"batch_size": 8, "max_epochs": epochs, "threshold": threshold, "patience": 2,
                "early_stop_patience": early, "images": 0}  # fmt: skip
    detector = Decree(build(Decree.Params, settings, owner="decree"))
    verdict = detector.detect(clip, DetectionContext(pairs, task, seed))

    # the same draws as the detector: initial mask, pattern, then one order per epoch
    draws = torch.Generator().manual_seed(seed)
    mask0 = torch.rand(size, size, generator=draws, dtype=torch.float64)
    pattern0 = torch.rand(3, size, size, generator=draws, dtype=torch.float64)
    orders = [torch.randperm(20, generator=draws) for _ in range(epochs)]
    cfg = {"lr": 0.5, "patience": 2, "threshold": threshold, "early_stop_patience": early,
           "lambda_min": 1e-5, "epochs": epochs, "batch_size": 8}  # fmt: skip
    best, steps, ran = authors_decree(clip, images, mask0, pattern0, orders, cfg)

    assert verdict.details["steps"] == steps and verdict.details["epochs"] == ran
    if best >= 1 / epsilon():
        assert verdict.details["found"] is False and verdict.score == 0.0
    else:
        assert verdict.details["found"] is True
        assert math.isclose(verdict.details["l1"], round(best, 4), abs_tol=1e-4)
        assert math.isclose(verdict.score, 1 - best / (3 * size * size), rel_tol=1e-9)
    assert all(p.requires_grad for p in clip.model.parameters())  # the model is left as it was


def test_the_cases_reach_the_early_stop_and_a_hard_trigger():
    """The linear cases are not all decided at the first step: some stop early, and their
    triggers are far from the first draw's size."""
    stopped = 0
    for _, seed, threshold, early, epochs in CASES[2:6]:
        params = {"batch_size": 8, "max_epochs": epochs, "threshold": threshold,
                  "patience": 2, "early_stop_patience": early, "images": 0}  # fmt: skip
        clip = linear_clip(seed)
        g = torch.Generator().manual_seed(100 + seed)
        images = torch.randint(0, 256, (20, 3, 8, 8), generator=g, dtype=torch.uint8)
        pairs = PairSet(images, ["x"] * 20, torch.zeros(20, dtype=torch.long))
        verdict = Decree(build(Decree.Params, params, owner="decree")).detect(
            clip, DetectionContext(pairs, ZeroShotTask(["a", "b"], ["{}"]), seed))
        stopped += verdict.details["epochs"] < epochs
        assert 0.05 < verdict.details["pl1"] < 0.95
    assert stopped >= 3
