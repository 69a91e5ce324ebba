"""Fidelity of the attacks: each trigger and poisoning rule computed through benchbd and
through an independent re-derivation of the authors' code, on small random inputs.

Every `ref_*` function below is written from the repository, file and lines its comment names,
not from benchbd; it takes the random draws as arguments, so both sides see the same numbers.
Where benchbd deviates on purpose (docs/fidelity.md, "Attacks"), the reference is called with
that deviation switched on and must then agree exactly; the literal reference is compared too,
and must differ only as the deviation says. `python tests/test_fidelity_attacks.py` prints the
measured effect of each pixel-level deviation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from benchbd.attacks.label_consistent import mentions
from benchbd.attacks.nashville import nashville
from benchbd.attacks.wanet import sampling_grid, warp, warp_field
from PIL import Image, ImageChops

from benchbd.core.params import build
from benchbd.core.seeds import substream
from benchbd.engine.model import create_clip
from benchbd.engine.plugins import AttackSetup, attacks

TARGET = 7


def make(name, task, count=20, seed=0, surrogate=None, **params):
    cls = attacks.get(name)
    return cls(build(cls.Params, params, name), AttackSetup(TARGET, task, count, seed, surrogate))


def random_batch(n=3, size=32, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)  # fmt: skip


def to_pil_bytes(x: torch.Tensor) -> np.ndarray:
    """torchvision's ToPILImage on a float tensor, as the references call it (`T2`):
    (x * 255).astype(np.uint8), truncating and wrapping out-of-range values instead of
    clipping (torchvision/transforms/functional.py, to_pil_image)."""
    return (x.numpy() * 255).astype(np.uint8)


def off_half(value: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Where a float's rounding is not decided by float error (its fraction is not ~0.5)."""
    frac = value - np.floor(value)
    return np.abs(frac - 0.5) > tol


# --- badnet: CleanCLIP's random noise patch -------------------------------------------------


def ref_cleanclip_random_patch(
    image: torch.Tensor, noise: torch.Tensor, top: int, left: int, clip=False, rounding=False
) -> np.ndarray:
    """nishadsinghi/CleanCLIP backdoor/utils.py, apply_trigger, lines 19-21, 53-56, 100-104
    and 135 (patch_type="random", patch_location="random"): ToTensor, mean over H, W, patch =
    mean + randn, pasted, ToPILImage. `clip` and `rounding` switch on benchbd's two listed
    deviations (clip to [0, 1] before conversion; round to nearest)."""
    x = image.float() / 255.0  # T1 = ToTensor
    mean = x.mean((1, 2), keepdim=True)
    patch = mean + noise
    side = noise.shape[-1]
    x[:, top : top + side, left : left + side] = patch
    if clip:
        x = x.clamp(0, 1)
    if rounding:
        return (x.double() * 255).round().numpy().astype(np.uint8)
    return to_pil_bytes(x)


def test_badnet_noise_patch_is_cleanclips_random_patch(tiny_data):
    """CleanCLIP's 16 px patch at 224 px (patch_fraction 0.071): the same patch as the reference
    with clipping and rounding; the literal reference differs only by truncation (one level)
    and where its unclipped values wrap around."""
    images = random_batch(n=2, size=224)
    attack = make("badnet", tiny_data.task, patch_fraction=0.071)
    out = attack.apply_trigger(images, torch.Generator().manual_seed(5))
    side = attack.patch_side(224)
    assert side == 16  # CleanCLIP's --patch_size default
    # The draws benchbd made, in its order: the noise, then each image's top, then left.
    g = torch.Generator().manual_seed(5)
    noise = torch.randn((2, 3, side, side), generator=g)
    tops = torch.randint(0, 224 - side + 1, (2,), generator=g).tolist()
    lefts = torch.randint(0, 224 - side + 1, (2,), generator=g).tolist()
    wrapped = 0
    for i in range(2):
        fixed = ref_cleanclip_random_patch(images[i], noise[i], tops[i], lefts[i], True, True)
        assert np.array_equal(out[i].numpy(), fixed)
        literal = ref_cleanclip_random_patch(images[i], noise[i], tops[i], lefts[i])
        value = (images[i].float() / 255).mean((1, 2), keepdim=True) + noise[i]
        inside = ((value >= 0) & (value <= 1)).numpy()
        patch = (slice(None), slice(tops[i], tops[i] + side), slice(lefts[i], lefts[i] + side))
        diff = out[i].numpy()[patch].astype(int) - literal[patch].astype(int)
        assert set(np.unique(diff[inside])) <= {0, 1}  # rounding against truncation
        wrapped += int((~inside).sum())
        outside = np.ones((3, 224, 224), dtype=bool)
        outside[patch] = False
        assert np.array_equal(out[i].numpy()[outside], literal[outside])
    assert wrapped > 0  # N(0, 1) in [0, 1] units: most of the patch leaves [0, 1]


def test_badnet_random_location_reaches_the_last_row_and_column(tiny_data):
    """The reference draws random.randint(0, 223 - patch_size), one short of the last valid
    corner (CleanCLIP backdoor/utils.py lines 103-104); benchbd draws every corner (listed)."""
    attack = make("badnet", tiny_data.task, patch_px=4, pattern="white")
    corners = attack.corners(4000, 8, 8, 4, torch.Generator().manual_seed(0))
    tops = {c[0][0] for c in corners}
    assert tops == set(range(0, 5))  # 0 .. 8 - 4; the reference's range stops at 3


# --- badnet: BackdoorBench's corner patches --------------------------------------------------


def ref_backdoorbench_mask(size: int, square: int, grid: bool) -> np.ndarray:
    """SCLBD/BackdoorBench resource/badnet/generate_white_square.py lines 8-11 (white square,
    bottom-right, distances 0) and generate_grid.py lines 8-19 (checkerboard: white where
    (i + j) is even, 1 elsewhere, since 0 means "no trigger" in the mask)."""
    mask = np.zeros((size, size, 3), dtype=np.uint8)
    for i in range(square):
        for j in range(square):
            on = (i + j) % 2 == 0 or not grid
            mask[size - square + i, size - square + j, :] = 255 if on else 1
    return mask


def ref_backdoorbench_patch(img_hwc: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """BackdoorBench utils/bd_img_transform/patch.py, AddMaskPatchTrigger.add_trigger (lines
    45-46): img * (mask == 0) + mask * (mask > 0)."""
    return img_hwc * (mask == 0) + mask * (mask > 0)


def test_badnet_white_corner_is_backdoorbenchs_badnets(tiny_data):
    images = random_batch(size=32)
    out = make("badnet", tiny_data.task, pattern="white", location="bottom_right", patch_px=3)
    out = out.apply_trigger(images, torch.Generator().manual_seed(0))
    mask = ref_backdoorbench_mask(32, 3, grid=False)
    for i in range(len(images)):
        ref = ref_backdoorbench_patch(images[i].permute(1, 2, 0).numpy(), mask)
        assert np.array_equal(out[i].permute(1, 2, 0).numpy(), ref)


def test_badnet_checkerboard_corner_is_backdoorbenchs_grid_but_for_black(tiny_data):
    """BackdoorBench's black cells are 1 (its mask keeps 0 for "no trigger"); benchbd's are 0."""
    images = random_batch(size=32)
    out = make("badnet", tiny_data.task, pattern="checkerboard", location="bottom_right",
               patch_px=3).apply_trigger(images, torch.Generator().manual_seed(0))  # fmt: skip
    mask = ref_backdoorbench_mask(32, 3, grid=True)
    for i in range(len(images)):
        ref = ref_backdoorbench_patch(images[i].permute(1, 2, 0).numpy(), mask).astype(int)
        diff = ref - out[i].permute(1, 2, 0).numpy().astype(int)
        assert np.array_equal(diff != 0, mask == 1) and set(np.unique(diff)) <= {0, 1}


# --- label-consistent: Turner et al.'s four corners, as BackdoorBench ships them ------------


ALL_CORNERS = [  # BackdoorBench utils/bd_img_transform/lc.py lines 44-84, "all-corners"
    ((0, 0), 1), ((0, 1), -1), ((0, 2), -1), ((1, 0), -1), ((1, 1), 1), ((1, 2), -1),
    ((2, 0), 1), ((2, 1), -1), ((2, 2), 1),
    ((-1, 0), 1), ((-1, 1), -1), ((-1, 2), 1), ((-2, 0), -1), ((-2, 1), 1), ((-2, 2), -1),
    ((-3, 0), 1), ((-3, 1), -1), ((-3, 2), -1),
    ((0, -1), 1), ((0, -2), -1), ((0, -3), -1), ((1, -1), -1), ((1, -2), 1), ((1, -3), -1),
    ((2, -1), 1), ((2, -2), -1), ((2, -3), 1),
    ((-1, -1), 1), ((-1, -2), -1), ((-1, -3), 1), ((-2, -1), -1), ((-2, -2), 1),
    ((-2, -3), -1), ((-3, -1), 1), ((-3, -2), -1), ((-3, -3), -1),
]  # fmt: skip


def ref_turner_all_corners(img_hwc: np.ndarray) -> np.ndarray:
    """BackdoorBench lc.py, poison_from_indices (lines 113-157) at its default
    reduced_amplitude = 1 (config/attack/lc/default.yaml): each mask value times 255 is ADDED
    to the pixel, then clipped, so +255 makes white and -255 black; at 32 px, no resize."""
    out = img_hwc.astype(np.float32).copy()
    for (x, y), value in ALL_CORNERS:
        out[x][y] += 255 * value
    return np.clip(out, 0, 255).astype(np.uint8)


def test_turner_preset_is_backdoorbenchs_all_corners_trigger_at_32px(tiny_data):
    images = random_batch(size=32)
    attack = make("label_consistent", tiny_data.task, trigger_params="turner", harden=False)
    out = attack.apply_trigger(images, torch.Generator().manual_seed(0))
    for i in range(len(images)):
        ref = ref_turner_all_corners(images[i].permute(1, 2, 0).numpy())
        assert np.array_equal(out[i].permute(1, 2, 0).numpy(), ref)


def test_turner_preset_keeps_3px_where_backdoorbench_rescales_its_mask(tiny_data):
    """At 64 px BackdoorBench resizes the 32 px mask (NEAREST, lc.py lines 93-111): 6 px cells;
    benchbd keeps Turner's 3 x 3 px at every size (listed)."""
    images = torch.full((1, 3, 64, 64), 128, dtype=torch.uint8)
    attack = make("label_consistent", tiny_data.task, trigger_params="turner", harden=False)
    out = attack.apply_trigger(images, torch.Generator().manual_seed(0))[0]
    changed = (out != 128).any(dim=0)
    assert changed[:3, :3].all() and not changed[3:61, 3:61].any()
    assert changed.sum() == 4 * 9


# --- label-consistent: which pairs, and the PGD hardening ------------------------------------


def ref_cleanclip_label_consistent_rows(captions: list[str], label: str) -> list[int]:
    """CleanCLIP backdoor/create_backdoor_data.py lines 64-71: `args.label in caption`, a
    case-sensitive substring test on the class name alone."""
    return [i for i, caption in enumerate(captions) if label in caption]


def test_label_consistent_rows_whole_words_and_synonyms_not_substrings(tiny_data):
    """Both rules agree on a caption naming the class as a word; benchbd also takes synonyms
    and any case, and rejects a substring inside a longer word (listed)."""
    captions = ["a photo of a star", "a Star at night", "a starburst", "five-pointed star",
                "a mustard stain", "a valentine"]  # fmt: skip
    names = tiny_data.task.names_for("star")
    ref = ref_cleanclip_label_consistent_rows(captions, "star")
    ours = [i for i, c in enumerate(captions) if mentions(c, names)]
    assert ref == [0, 2, 3, 4]  # "starburst" and "mustard" are substrings
    assert ours == [0, 1, 2, 3]  # "Star"; "starburst" is one of star's synonyms


def ref_backdoorbench_pgd(logits_fn, images: torch.Tensor, labels: torch.Tensor, eps: float,
                          alpha: float, steps: int) -> torch.Tensor:  # fmt: skip
    """BackdoorBench resource/label-consistent/craft_adv_dataset.py, PGD.forward (lines
    491-522) without random start: untargeted, ascend the cross-entropy of the true label,
    project onto the eps ball, clip to [0, 1]. Returned as floats; lines 409-414 then truncate
    with (x * 255).type(uint8)."""
    adv = images.clone().detach()
    for _ in range(steps):
        adv.requires_grad = True
        cost = F.cross_entropy(logits_fn(adv), labels)
        grad = torch.autograd.grad(cost, adv, retain_graph=False, create_graph=False)[0]
        adv = adv.detach() + alpha * grad.sign()
        delta = torch.clamp(adv - images, min=-eps, max=eps)
        adv = torch.clamp(images + delta, min=0, max=1).detach()
    return adv


@pytest.mark.slow
def test_label_consistent_hardening_is_backdoorbenchs_pgd(tiny_data):
    """The same PGD on the same surrogate's zero-shot logits (benchbd's surrogate: a clean
    CLIP; labels: the target, the true class of every pair hardened). benchbd rounds the
    result to uint8 where BackdoorBench truncates (listed)."""
    from benchbd.engine.evaluate import zero_shot_weights

    clip = create_clip(seed=0)
    attack = make("label_consistent", tiny_data.task, surrogate=lambda: clip, steps=3)
    images = random_batch(n=4, size=32, seed=3)
    hardened = attack.harden(images)
    weights = zero_shot_weights(clip, tiny_data.task)
    for p in clip.model.parameters():
        p.requires_grad_(False)

    def logits(x):
        features = clip.model.encode_image(clip.normalize_float(x))
        return 100.0 * F.normalize(features, dim=-1) @ weights

    labels = torch.full((4,), TARGET)
    ref = ref_backdoorbench_pgd(logits, images.float() / 255, labels, 8 / 255, 1.5 / 255, 3)
    # Steps of 1.5 / 255 land on half levels, where rounding is float error's choice: compare
    # with the nearest level to float tolerance.
    scaled = ref.double().numpy() * 255
    assert np.abs(hardened.numpy() - scaled).max() <= 0.5 + 1e-3
    assert np.abs(scaled - images.double().numpy()).max() <= 8 + 1e-3
    truncated = (ref * 255).type(torch.uint8)
    assert set((hardened.int() - truncated.int()).unique().tolist()) <= {0, 1}


# --- blended ---------------------------------------------------------------------------------


def ref_cleanclip_blended(image: torch.Tensor, noise: torch.Tensor, rounding: bool = False):
    """CleanCLIP backdoor/utils.py lines 61-63 and 111-113, 135 (patch_type="blended",
    patch_location="blended"): 0.2 * rand + 0.8 * image on [0, 1], clipped, ToPILImage."""
    x = image.float() / 255.0
    mixed = torch.clip(0.2 * noise + 0.8 * x, 0, 1)
    if rounding:
        return (mixed.double() * 255).numpy()
    return to_pil_bytes(mixed)


def test_blended_fresh_noise_is_cleanclips_blend(tiny_data):
    images = random_batch(n=2, size=32)
    out = make("blended", tiny_data.task).apply_trigger(images, torch.Generator().manual_seed(2))
    noise = torch.rand((2, 3, 32, 32), generator=torch.Generator().manual_seed(2))
    for i in range(2):
        exact = ref_cleanclip_blended(images[i], noise[i], rounding=True)
        decided = off_half(exact)
        assert decided.mean() > 0.99
        assert np.array_equal(out[i].numpy()[decided], np.round(exact)[decided])
        literal = ref_cleanclip_blended(images[i], noise[i])
        assert set(np.unique(out[i].numpy().astype(int) - literal)) <= {0, 1}


def test_blended_image_pattern_is_backdoorbenchs_blend(tiny_data, tmp_path):
    """BackdoorBench utils/bd_img_transform/blended.py line 26: (1 - a) * img + a * pattern, the
    pattern read and resized to the image size by torchvision's Resize on a PIL image
    (utils/aggregate_block/bd_attack_generate.py lines 81-99), ToTensor then * 255."""
    from torchvision import transforms as T

    pattern = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pattern).save(tmp_path / "kitty.png")
    trans = T.Compose([T.ToPILImage(), T.Resize((32, 32)), T.ToTensor()])
    resized = trans(pattern).numpy().astype(np.float64) * 255  # (3, 32, 32)
    images = random_batch(n=2, size=32)
    attack = make(
        "blended", tiny_data.task, pattern="image", image_path=str(tmp_path / "kitty.png")
    )
    out = attack.apply_trigger(images, torch.Generator().manual_seed(0)).numpy()
    ref = 0.8 * images.double().numpy() + 0.2 * resized[None]
    decided = off_half(ref, 1e-3)
    assert decided.mean() > 0.99
    assert np.array_equal(out[decided], np.round(ref)[decided])
    truncated = np.clip(ref, 0, 255).astype(np.uint8)  # bd_attack_generate.py lines 39-44
    assert set(np.unique(out.astype(int) - truncated)) <= {0, 1}


# --- WaNet -----------------------------------------------------------------------------------


def ref_wanet_grid(ins: torch.Tensor, height: int, s: float, grid_rescale: float) -> torch.Tensor:
    """SCLBD/BackdoorBench attack/wanet.py lines 237-250 and 287-288: ins /= mean |ins|, bicubic
    upsample (align_corners=True), identity grid from meshgrid (ij) stacked (y, x), then
    clamp((identity + s * noise / H) * grid_rescale, -1, 1)."""
    ins = ins / torch.mean(torch.abs(ins))
    noise_grid = F.interpolate(ins, size=height, mode="bicubic", align_corners=True)
    noise_grid = noise_grid.permute(0, 2, 3, 1)
    array1d = torch.linspace(-1, 1, steps=height)
    x, y = torch.meshgrid(array1d, array1d, indexing="ij")
    identity_grid = torch.stack((y, x), 2)[None, ...]
    grid_temps = (identity_grid + s * noise_grid / height) * grid_rescale
    return torch.clamp(grid_temps, -1, 1)


@pytest.mark.parametrize(("k", "s", "rescale", "size"), [(4, 0.5, 1.0, 32), (4, 8.0, 1.0, 32),
                                                         (6, 1.0, 0.98, 48)])  # fmt: skip
def test_wanet_field_and_grid_are_backdoorbenchs(k, s, rescale, size):
    ins = torch.rand(1, 2, k, k, generator=torch.Generator().manual_seed(11)) * 2 - 1
    assert torch.equal(warp_field(k, 11), ins / torch.mean(torch.abs(ins)))
    assert torch.equal(sampling_grid(warp_field(k, 11), size, s, rescale),
                       ref_wanet_grid(ins, size, s, rescale))  # fmt: skip


def test_wanet_warp_is_grid_sample_of_the_image():
    """BackdoorBench warps normalised tensors and denormalises (attack/wanet.py line 295; a
    linear map, so the same as warping [0, 1] pixels); CleanCLIP warps ToTensor output and
    truncates with ToPILImage (backdoor/utils.py lines 48-50). benchbd rounds (listed)."""
    images = random_batch(n=2, size=32)
    grid = sampling_grid(warp_field(4, 3), 32, 8.0, 1.0)
    out = warp(images, grid).numpy()
    ref = F.grid_sample(images.float() / 255, grid.repeat(2, 1, 1, 1), align_corners=True)
    scaled = ref.double().numpy() * 255
    decided = off_half(scaled, 1e-3)
    assert decided.mean() > 0.99
    assert np.array_equal(out[decided], np.round(scaled)[decided])
    assert set(np.unique(out.astype(int) - to_pil_bytes(ref))) <= {0, 1}


def test_wanet_noise_mode_is_backdoorbenchs_cross_samples(tiny_data):
    """Noise mode (BackdoorBench attack/wanet.py lines 504-513, 520-530): cross_ratio x the
    poisons are warped by clamp(grid + U(-1, 1) / H, -1, 1) and keep their own captions."""
    attack = make("wanet", tiny_data.task, count=10, seed=4, cross_ratio=2.0, s=0.5)
    poisoned = attack.poison(tiny_data.train)
    pairs = tiny_data.train
    # benchbd's own draws for the cross rows (its seeding; the computation is the reference's).
    g = torch.Generator().manual_seed(substream(4, "cross"))
    free = torch.ones(len(pairs), dtype=torch.bool)
    free[poisoned.indices] = False
    free_rows = torch.nonzero(free).flatten()
    cross = free_rows[torch.randperm(len(free_rows), generator=g)[:20]].sort().values
    ins = torch.rand((20, 32, 32, 2), generator=g) * 2 - 1
    field = torch.rand(1, 2, 4, 4, generator=torch.Generator().manual_seed(4)) * 2 - 1
    grid = ref_wanet_grid(field, 32, 0.5, 1.0)
    grids2 = torch.clamp(grid.repeat(20, 1, 1, 1) + ins / 32, -1, 1)
    ref = F.grid_sample(pairs.images[cross].float(), grids2, align_corners=True)
    got = poisoned.pairs.images[cross].double().numpy()
    exact = ref.double().numpy()
    decided = off_half(exact, 1e-3)
    assert decided.mean() > 0.99
    assert np.array_equal(got[decided], np.round(exact)[decided])
    assert [poisoned.pairs.captions[i] for i in cross] == [pairs.captions[i] for i in cross]
    changed = (poisoned.pairs.images != pairs.images).any(dim=(1, 2, 3)).nonzero().flatten()
    assert set(changed.tolist()) <= set(poisoned.indices) | set(cross.tolist())


# --- SIG -------------------------------------------------------------------------------------


def ref_backdoorbench_sig(img_hwc: np.ndarray, delta: float, f: float, rounding=False):
    """SCLBD/BackdoorBench utils/bd_img_transform/sig.py, sigTrigger (lines 41-53):
    pattern[i, j] = delta * sin(2 pi j f / m) with m = img.shape[1] (the width of an H x W x C
    array), float32; uint8(clip(uint32(img) + pattern)) truncates."""
    img = np.float32(img_hwc)
    pattern = np.zeros_like(img)
    m = pattern.shape[1]
    for i in range(int(img.shape[0])):
        for j in range(int(img.shape[1])):
            pattern[i, j] = delta * np.sin(2 * np.pi * j * f / m)
    total = np.clip(np.uint32(img) + pattern, 0, 255)
    return total if rounding else np.uint8(total)


def ref_badclip_sig(image: torch.Tensor) -> np.ndarray:
    """LiangSiyuan21/BadCLIP backdoor/utils.py lines 64-73 (patch_type="SIG"): (60 / 255) *
    sin(2 pi j 6 / 224) added to the [0, 1] image (224 px), clipped, ToPILImage."""
    x = image.float() / 255.0
    j = torch.arange(x.shape[-1], dtype=torch.float64)
    noise = ((60 / 255) * torch.sin(2 * math.pi * j * 6 / 224)).float().expand_as(x)
    return to_pil_bytes(torch.clip(noise + x, 0, 1))


@pytest.mark.parametrize(("delta", "f", "size"), [(40.0, 6.0, 32), (60.0, 6.0, 32),
                                                  (20.0, 3.0, 48)])  # fmt: skip
def test_sig_is_backdoorbenchs_signal(tiny_data, delta, f, size):
    images = random_batch(n=2, size=size)
    out = make("sig", tiny_data.task, delta=delta, f=f).apply_trigger(images, None)
    for i in range(2):
        hwc = images[i].permute(1, 2, 0).numpy()
        exact = ref_backdoorbench_sig(hwc, delta, f, rounding=True)
        decided = off_half(exact, 1e-3)
        assert decided.mean() > 0.99
        got = out[i].permute(1, 2, 0).numpy()
        assert np.array_equal(got[decided], np.round(exact)[decided])
        literal = ref_backdoorbench_sig(hwc, delta, f)
        assert set(np.unique(got.astype(int) - literal)) <= {0, 1}


def test_sig_defaults_are_badclips_baseline_at_224px(tiny_data):
    images = random_batch(n=1, size=224)
    out = make("sig", tiny_data.task).apply_trigger(images, None)[0].numpy().astype(int)
    assert set(np.unique(out - ref_badclip_sig(images[0]))) <= {0, 1}


# --- Nashville -------------------------------------------------------------------------------


def ref_pilgram_nashville(rgb: np.ndarray) -> np.ndarray:
    """pilgram 2.0 nashville.py (what Detect-CLIP's datasets/cc3m_nashville.py line 74 calls),
    in Pillow operations as pilgram composes them: util/fill.py (opacity -> alpha byte
    round(a * 255)), css/blending/alpha.py alpha_blend's source-alpha branch
    (multiply(a, blend) + multiply(255 - a, backdrop), util/add.py clipping), darken.py and
    lighten.py (ImageChops.darker / lighter), css/sepia.py and saturate.py (convert with a
    colour matrix), contrast.py and brightness.py (point with a rounding function)."""
    cb = Image.fromarray(rgb)

    def composite(backdrop, colour, opacity, blend):
        alpha = int(round(opacity * 255))
        source = Image.new("RGB", backdrop.size, colour)
        blended = blend(backdrop, source)
        a = Image.new("RGB", backdrop.size, (alpha,) * 3)
        inverse = Image.new("RGB", backdrop.size, (255 - alpha,) * 3)
        one = np.asarray(ImageChops.multiply(a, blended), dtype=np.int16)
        two = np.asarray(ImageChops.multiply(inverse, backdrop))
        return Image.fromarray((one + two).clip(0, 255).astype(np.uint8))

    def sepia_matrix(amount):
        s = 1 - min(amount, 1)
        return (0.393 + 0.607 * s, 0.769 - 0.769 * s, 0.189 - 0.189 * s, 0,
                0.349 - 0.349 * s, 0.686 + 0.314 * s, 0.168 - 0.168 * s, 0,
                0.272 - 0.272 * s, 0.534 - 0.534 * s, 0.131 + 0.869 * s, 0)  # fmt: skip

    def saturate_matrix(s):
        return (0.213 + 0.787 * s, 0.715 - 0.715 * s, 0.072 - 0.072 * s, 0,
                0.213 - 0.213 * s, 0.715 + 0.285 * s, 0.072 - 0.072 * s, 0,
                0.213 - 0.213 * s, 0.715 - 0.715 * s, 0.072 + 0.928 * s, 0)  # fmt: skip

    cm1 = composite(cb, (247, 176, 153), 0.56, ImageChops.darker)
    cr = composite(cm1, (0, 70, 150), 0.4, ImageChops.lighter)
    cr = cr.convert("RGB", sepia_matrix(0.2))
    cr = cr.point(lambda x: round(x * 1.2 + -127.5 * 1.2 + 127.5))
    cr = cr.point(lambda x: round(x * 1.05))
    cr = cr.convert("RGB", saturate_matrix(1.2))
    return np.asarray(cr)


def test_nashville_is_pilgrams_filter_pixel_for_pixel():
    images = random_batch(n=3, size=32, seed=9)
    out = nashville(images)
    for i in range(3):
        ref = ref_pilgram_nashville(images[i].permute(1, 2, 0).numpy())
        assert np.array_equal(out[i].permute(1, 2, 0).numpy(), ref)


# --- dirty-label captions and multi-trigger --------------------------------------------------


def test_dirty_label_captions_are_a_random_template_with_the_target(tiny_data):
    """CleanCLIP create_backdoor_data.py lines 106-112: templates[random.randint(0, n - 1)]
    (label): every poisoned caption is one of the target's prompts, each template drawn."""
    attack = make("badnet", tiny_data.task, count=300)
    poisoned = attack.poison(tiny_data.train)
    prompts = tiny_data.task.prompts(tiny_data.task.classnames[TARGET])
    captions = [poisoned.pairs.captions[i] for i in poisoned.indices]
    assert set(captions) == set(prompts)
    # benchbd draws among rows of other classes (listed: the reference shuffles every row).
    assert (tiny_data.train.labels[poisoned.indices] != TARGET).all()


def ref_detect_clip_multi_counts(n: int, triggers: int, rng: np.random.Generator) -> np.ndarray:
    """HanxunH/Detect-CLIP-Backdoor-Samples datasets/cc3m_multi_trigger.py lines 33-36: each
    poisoned row picks its trigger with np.random.choice(triggers), so each trigger's share
    is random (multinomial) rather than fixed."""
    picks = rng.choice(triggers, size=n)
    return np.bincount(picks, minlength=triggers)


def test_multi_trigger_parts_are_their_attacks_on_an_even_split(tiny_data):
    attack = make("multi_trigger", tiny_data.task, count=30, triggers="badnet,blended,sig",
                  targets="star,heart,arrow")  # fmt: skip
    poisoned = attack.poison(tiny_data.train)
    rows = attack.split(tiny_data.train)
    assert [len(r) for r in rows.values()] == [10, 10, 10]  # the reference: multinomial
    g = torch.Generator().manual_seed(substream(0, "poison-images"))
    for name, inner in attack.inner.items():
        expected = inner.poison_images(tiny_data.train.images[rows[name]], g)
        prompts = tiny_data.task.prompts(inner.setup.target_name)
        torch.randint(0, len(prompts), (len(rows[name]),), generator=g)  # its caption draws
        assert torch.equal(poisoned.pairs.images[rows[name]], expected)
        assert {poisoned.pairs.captions[r] for r in rows[name]} <= set(prompts)
        assert (tiny_data.train.labels[rows[name]] != inner.setup.target).all()
    counts = ref_detect_clip_multi_counts(30, 3, np.random.default_rng(0))
    assert counts.sum() == 30


# --- measured effects (printed by `python tests/test_fidelity_attacks.py`) --------------------


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255**2 / mse)


def measure() -> None:  # pragma: no cover - a report, run by hand
    from benchbd.engine.data.sizes import DataSizes
    from benchbd.engine.data.sources import load_data

    data = load_data("synthetic", DataSizes(train=1024, clean=256, test=200, validation=200),
                     image_size=32)  # fmt: skip
    task = data.task
    up = F.interpolate(data.test.images[:64].float(), size=224, mode="bilinear")
    images = up.round().clamp(0, 255).to(torch.uint8)  # 64 test images at 224 px
    n = len(images)
    # badnet: CleanCLIP's 16 px patch, benchbd (clip + round) against the literal reference.
    attack = make("badnet", task, patch_fraction=0.071)
    out = attack.apply_trigger(images, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    noise = torch.randn((n, 3, 16, 16), generator=g)
    tops = torch.randint(0, 209, (n,), generator=g).tolist()
    lefts = torch.randint(0, 209, (n,), generator=g).tolist()
    literal = np.stack([ref_cleanclip_random_patch(images[i], noise[i], tops[i], lefts[i])
                        for i in range(n)])  # fmt: skip
    clean = images.numpy()
    values = torch.stack([(images[i].float() / 255).mean((1, 2), keepdim=True) + noise[i]
                          for i in range(n)])  # fmt: skip
    leaves = ((values < 0) | (values > 1)).float().mean()
    print(f"badnet 16 px @224: PSNR benchbd {psnr(out.numpy(), clean):.2f} dB, literal "
          f"reference (wraps) {psnr(literal, clean):.2f} dB; patch values outside [0, 1] "
          f"(clipped here, wrapped there): {leaves:.3f}")  # fmt: skip
    # blended: rounding against truncation.
    out = make("blended", task).apply_trigger(images, torch.Generator().manual_seed(2))
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(2))
    literal = np.stack([ref_cleanclip_blended(images[i], noise[i]) for i in range(n)])
    print(
        f"blended a=0.2: PSNR benchbd {psnr(out.numpy(), clean):.2f} dB, reference "
        f"(truncating) {psnr(literal, clean):.2f} dB, mean shift "
        f"{(out.numpy().astype(float) - literal).mean():.3f} levels"
    )
    # SIG: BadCLIP's at 224 px.
    out = make("sig", task).apply_trigger(images, None).numpy()
    literal = np.stack([ref_badclip_sig(images[i]) for i in range(n)])
    print(
        f"sig 60/6: PSNR benchbd {psnr(out, clean):.2f} dB, BadCLIP's reference "
        f"{psnr(literal, clean):.2f} dB"
    )
    # WaNet at 32 px: rounding against truncation.
    small = data.test.images[:64]
    grid = sampling_grid(warp_field(4, 0), 32, 8.0, 1.0)
    out = warp(small, grid).numpy()
    ref = F.grid_sample(small.float() / 255, grid.repeat(len(small), 1, 1, 1), align_corners=True)
    print(
        f"wanet s=8 @32: PSNR benchbd {psnr(out, small.numpy()):.2f} dB, truncating "
        f"{psnr(to_pil_bytes(ref), small.numpy()):.2f} dB"
    )
    for s in (0.5, 1.0, 8.0):
        grid = sampling_grid(warp_field(4, 0), 32, s, 1.0)
        print(f"wanet s={s} @32: PSNR {psnr(warp(small, grid).numpy(), small.numpy()):.2f} dB")
    # Nashville: benchbd filters the stored 32 px images; Detect-CLIP filters the image as
    # loaded, then resizes. Both orders on 64 synthetic images drawn at 64 px.
    big = load_data("synthetic", DataSizes(train=256, clean=64, test=64, validation=64),
                    image_size=64).test.images[:64]  # fmt: skip

    def down(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.from_numpy(np.array(Image.fromarray(i.permute(1, 2, 0).numpy())
                            .resize((32, 32), Image.Resampling.BILINEAR))).permute(2, 0, 1)
                            for i in x])  # fmt: skip

    ours, theirs = nashville(down(big)).numpy(), down(nashville(big)).numpy()
    print(f"nashville: resize-then-filter against filter-then-resize (64 -> 32 px): PSNR "
          f"{psnr(ours, theirs):.2f} dB (the filter itself: {psnr(ours, down(big).numpy()):.2f} "
          f"dB)")  # fmt: skip
    # label-consistent eligibility: whole words and synonyms against the substring rule.
    captions = data.train.captions
    for name in task.classnames:
        ours = sum(mentions(c, task.names_for(name)) for c in captions)
        ref = len(ref_cleanclip_label_consistent_rows(captions, name))
        print(f"label-consistent rows naming {name!r}: benchbd {ours}, substring rule {ref}")
    from benchbd.engine.run_config import default_sizes

    digits = load_data("digits", default_sizes("digits"), image_size=32)
    ours = sum(mentions(c, digits.task.names_for("zero")) for c in digits.train.captions)
    ref = len(ref_cleanclip_label_consistent_rows(digits.train.captions, "zero"))
    print(f"label-consistent rows naming 'zero' on digits: benchbd {ours}, substring rule {ref}")
    # multi-trigger: how uneven the reference's random shares are at 30 poisons, 3 triggers.
    rng = np.random.default_rng(0)
    smallest = np.array([ref_detect_clip_multi_counts(30, 3, rng).min() for _ in range(10000)])
    print(
        f"multi-trigger 30 poisons, 3 triggers: the reference's smallest share is below 8 "
        f"in {np.mean(smallest < 8):.3f} of draws (mean {smallest.mean():.2f}); benchbd: 10"
    )


if __name__ == "__main__":  # pragma: no cover
    measure()
