"""Turner et al.'s label-consistent trigger: 3 x 3 mirrored copies in the four corners.

The reference is the all-corners mask of Turner, Tsipras and Madry's released code
(MadryLab/label-consistent-backdoor-code, poison_attack.py), written out below: a 3 x 3
black-and-white pattern whose right-hand copies are the left-hand ones reflected left-right,
so that a horizontal flip (their training augmentation) maps the trigger onto itself.
Nothing here trains.
"""

from __future__ import annotations

import pytest
import torch
from benchbd.attacks.badnet import BadNet, BadNetParams
from benchbd.attacks.label_consistent import TRIGGER_PRESETS, LabelConsistent, LabelConsistentParams

from benchbd.core.errors import BenchbdError
from benchbd.core.params import build
from benchbd.engine.data.pairs import ZeroShotTask
from benchbd.engine.plugins import AttackSetup, attacks

# Each corner's 3 x 3 block in Turner's released mask, rows top to bottom, 1 white, 0 black.
TURNER_BLOCKS = {
    "top_left": ("100", "010", "101"),
    "top_right": ("001", "010", "101"),
    "bottom_left": ("100", "010", "101"),
    "bottom_right": ("001", "010", "101"),
}
TURNER = "pattern=turner,location=four_corners_mirrored,patch_px=3"
GREY = 128  # neither black nor white, so every trigger pixel differs from the clean image


def attack_setup() -> AttackSetup:
    task = ZeroShotTask(classnames=["cat", "dog"], templates=["a photo of a {}."])
    return AttackSetup(target=0, task=task, count=1, seed=0)


def badnet(**values: object) -> BadNet:
    return BadNet(build(BadNetParams, values, "attack 'badnet'"), attack_setup())


def trigger(attack, images: torch.Tensor) -> torch.Tensor:
    return attack.apply_trigger(images, torch.Generator().manual_seed(0))


def grey(side: int, n: int = 2) -> torch.Tensor:
    return torch.full((n, 3, side, side), GREY, dtype=torch.uint8)


def random_images(side: int, n: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(side)
    return torch.randint(0, 256, (n, 3, side, side), generator=generator, dtype=torch.uint8)


def turner_reference(images: torch.Tensor) -> torch.Tensor:
    """Turner's mask pasted by hand: four 3 x 3 blocks, every channel set to 0 or 255."""
    out = images.clone()
    h, w = images.shape[-2:]
    origin = {"top_left": (0, 0), "top_right": (0, w - 3),
              "bottom_left": (h - 3, 0), "bottom_right": (h - 3, w - 3)}  # fmt: skip
    for corner, rows in TURNER_BLOCKS.items():
        top, left = origin[corner]
        for dy, row in enumerate(rows):
            for dx, bit in enumerate(row):
                out[:, :, top + dy, left + dx] = 255 if bit == "1" else 0
    return out


def label_consistent(trigger_params: str) -> LabelConsistent:
    values = {"trigger_params": trigger_params, "harden": "false"}
    return LabelConsistent(build(LabelConsistentParams, values, "lc"), attack_setup())


@pytest.mark.parametrize("side", [32, 64])
def test_turner_preset_is_turners_mask_exactly_3px_and_nothing_else(side):
    attack = label_consistent("turner")
    for images in (grey(side), random_images(side)):
        assert torch.equal(trigger(attack, images), turner_reference(images))
    changed = (trigger(attack, grey(side)) != GREY).any(dim=(0, 1))
    assert changed.sum() == 4 * 9  # exactly four 3 x 3 blocks, at 32 px and at 64 px
    near, far = slice(0, 3), slice(side - 3, side)
    for rows in (near, far):
        for cols in (near, far):
            assert changed[rows, cols].all()


@pytest.mark.parametrize(
    "values",
    [
        {"pattern": "turner", "patch_px": 3},
        {"pattern": "seeded_noise", "patch_px": 3},
        {"pattern": "checkerboard"},  # 8 px: an even side, where a reflection inverts the board
        {"pattern": "seeded_noise", "patch_fraction": 0.2},
    ],
)
def test_right_copies_mirror_the_left_ones_so_a_horizontal_flip_keeps_the_trigger(values):
    attack = badnet(location="four_corners_mirrored", **values)
    images = random_images(32)
    out = trigger(attack, images)
    side = attack.patch_side(32)
    top, bottom = slice(0, side), slice(32 - side, 32)
    left, right = slice(0, side), slice(32 - side, 32)
    for rows in (top, bottom):
        assert torch.equal(out[:, :, rows, right], out[:, :, rows, left].flip(-1))
    assert torch.equal(out[:, :, bottom, left], out[:, :, top, left])  # as Turner: not flipped
    assert torch.equal(trigger(attack, images.flip(-1)), out.flip(-1))
    inside = torch.zeros(32, 32, dtype=torch.bool)
    for rows in (top, bottom):
        for cols in (left, right):
            inside[rows, cols] = True
    assert torch.equal(out[:, :, ~inside], images[:, :, ~inside])  # only the corner pixels


def test_unmirrored_corners_are_unchanged_by_the_new_location():
    """The same patch copied as before; the mirrored value differs only on the right."""
    images = random_images(32)
    plain = trigger(badnet(pattern="seeded_noise", location="four_corners"), images)
    mirrored = trigger(badnet(pattern="seeded_noise", location="four_corners_mirrored"), images)
    assert torch.equal(plain[..., :16], mirrored[..., :16])
    assert not torch.equal(plain[..., 16:], mirrored[..., 16:])


def test_patch_px_is_a_fixed_side_and_zero_means_the_fraction():
    assert badnet().patch_side(32) == 8 and badnet().patch_side(224) == 56
    assert badnet(patch_px=3).patch_side(32) == 3 and badnet(patch_px=3).patch_side(224) == 3
    assert badnet(patch_px="0", patch_fraction="0.125").patch_side(32) == 4


def test_patch_px_at_its_default_is_not_recorded():
    """A run of an existing setting records (and fingerprints) the same parameters as before
    patch_px existed; a run that sets it records it."""
    assert BadNetParams().to_dict() == {
        "patch_fraction": 0.25, "pattern": "noise", "location": "random",
    }  # fmt: skip
    assert BadNetParams(patch_px=3).to_dict()["patch_px"] == 3


def test_preset_parses_through_the_normal_build_path():
    cls = attacks.get("label_consistent")
    params = build(cls.Params, {"trigger_params": "turner"}, "attack 'label_consistent'")
    assert params.trigger_params == "turner" and TRIGGER_PRESETS["turner"] == TURNER
    inner = LabelConsistent(params, attack_setup()).inner
    assert inner.params == BadNetParams(pattern="turner", location="four_corners_mirrored",
                                        patch_px=3)  # fmt: skip
    assert label_consistent(TURNER).inner.params == inner.params  # the preset, spelled out
    default = LabelConsistent(LabelConsistentParams(), attack_setup()).inner
    assert default.params == BadNetParams(pattern="checkerboard", location="four_corners")
    assert default.patch_side(32) == 8  # the benchbd default: 25 % of the side


@pytest.mark.parametrize(
    ("owner", "values", "message"),
    [
        (LabelConsistentParams, {"trigger_params": "turnr"}, "did you mean 'turner'"),
        (LabelConsistentParams, {"trigger": "blended", "trigger_params": "turner"}, "badnet"),
        (BadNetParams, {"location": "four_corners_mirror"}, "must be one of"),
        (BadNetParams, {"patch_px": "-1"}, ">= 0"),
        (BadNetParams, {"patch_px": "3.5"}, "must be int"),
        (BadNetParams, {"pattern": "turners"}, "must be one of"),
    ],
)
def test_bad_values_are_errors(owner, values, message):
    with pytest.raises(BenchbdError, match=message):
        build(owner, values, "attack")


def test_a_too_wide_patch_and_an_unknown_trigger_parameter_are_errors():
    with pytest.raises(BenchbdError, match="patch_px"):
        trigger(badnet(patch_px=40), random_images(32))
    with pytest.raises(BenchbdError, match="no parameter 'colour'"):
        label_consistent("patch_px=3,colour=red")
