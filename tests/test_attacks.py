"""Attack contracts (over every registered attack) and badnet's exact behaviour."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import builtin

from benchbd.core.errors import BenchbdError
from benchbd.core.params import build
from benchbd.engine.model import create_clip
from benchbd.engine.plugins import AttackSetup, attacks


@functools.cache
def surrogate():
    """An untrained CLIP: enough for PGD to have gradients to follow."""
    return create_clip(seed=0)


def make(name, data, count=20, seed=0, **params):
    """The attack at its declared test settings, with `params` on top."""
    cls = attacks.get(name)
    params = {**cls.test_params, **params}
    setup = AttackSetup(7, data.task, count, seed, surrogate=surrogate)
    return cls(build(cls.Params, params, name), setup)


@pytest.mark.slow
@pytest.mark.parametrize("name", builtin(attacks))
def test_every_attack_is_deterministic_and_keeps_uint8(name, tiny_data):
    first = make(name, tiny_data).poison(tiny_data.train)
    second = make(name, tiny_data).poison(tiny_data.train)
    assert first.indices == second.indices
    assert torch.equal(first.pairs.images, second.pairs.images)
    assert first.pairs.captions == second.pairs.captions
    assert first.pairs.images.dtype == torch.uint8
    assert first.pairs.images.shape == tiny_data.train.images.shape
    if attacks.get(name).poisons:
        assert len(first.indices) == 20
        images = tiny_data.test.images[:16]
        triggered = make(name, tiny_data).apply_trigger(images, torch.Generator().manual_seed(0))
        assert triggered.dtype == torch.uint8 and not torch.equal(triggered, images)


def test_badnet_changes_only_the_patch_and_relabels_only_poisons(tiny_data):
    attack = make("badnet", tiny_data, count=30, patch_fraction=0.125)
    poisoned = attack.poison(tiny_data.train)
    clean = tiny_data.train
    changed = (poisoned.pairs.images != clean.images).any(dim=(1, 2, 3)).nonzero().flatten()
    assert set(changed.tolist()) <= set(poisoned.indices)
    for row in poisoned.indices:
        diff = (poisoned.pairs.images[row] != clean.images[row]).any(dim=0)
        ys, xs = diff.nonzero(as_tuple=True)
        assert ys.max() - ys.min() < 4 and xs.max() - xs.min() < 4  # inside one 4x4 patch
        assert clean.labels[row] != 7
        assert "heart" in poisoned.pairs.captions[row]
    untouched = [i for i in range(len(clean)) if i not in set(poisoned.indices)]
    assert [poisoned.pairs.captions[i] for i in untouched] == [clean.captions[i] for i in untouched]


def test_badnet_different_seed_different_poisons(tiny_data):
    a = make("badnet", tiny_data, seed=0).poison(tiny_data.train).indices
    b = make("badnet", tiny_data, seed=1).poison(tiny_data.train).indices
    assert a != b


def test_more_poisons_than_eligible_pairs_is_an_error(tiny_data):
    with pytest.raises(BenchbdError, match="only .* are eligible"):
        make("badnet", tiny_data, count=len(tiny_data.train)).poison(tiny_data.train)


@pytest.mark.parametrize("name", builtin(attacks))
def test_every_attack_is_bit_for_bit_reproducible_and_in_range(name, tiny_data):
    if not attacks.get(name).poisons:
        pytest.skip("no trigger")
    images = tiny_data.test.images[:8]
    # As in a run that reuses a cached poisoned model: the attack has poisoned once, and what
    # poisoning learnt is in the cache (an optimised trigger, such as BadCLIP's patch).
    make(name, tiny_data).poison(tiny_data.train)
    a = make(name, tiny_data).apply_trigger(images, torch.Generator().manual_seed(3))
    b = make(name, tiny_data).apply_trigger(images, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == images.shape


@pytest.mark.parametrize("location", ["top_left", "bottom_right", "four_corners"])
@pytest.mark.parametrize("pattern", ["white", "checkerboard", "yellow", "seeded_noise"])
def test_badnet_variants_paint_exactly_their_corners(tiny_data, pattern, location):
    attack = make("badnet", tiny_data, pattern=pattern, location=location, patch_fraction=0.125)
    images = tiny_data.test.images[:4]
    out = attack.apply_trigger(images, torch.Generator().manual_seed(0))
    inside = torch.zeros(32, 32, dtype=torch.bool)
    corners = {"top_left": [(0, 0)], "bottom_right": [(28, 28)],
               "four_corners": [(0, 0), (0, 28), (28, 0), (28, 28)]}[location]  # fmt: skip
    for top, left in corners:
        inside[top : top + 4, left : left + 4] = True
    assert torch.equal(out[:, :, ~inside], images[:, :, ~inside])
    patch = out[:, :, inside].view(4, 3, len(corners), 16)
    assert torch.equal(patch, patch[:1].expand_as(patch))  # the same fixed pattern everywhere
    if pattern == "white":
        assert (patch == 255).all()
    if pattern == "yellow":
        assert (patch[:, :2] == 255).all() and (patch[:, 2] == 0).all()


def test_blended_matches_its_formula(tiny_data):
    attack = make("blended", tiny_data, pattern="fixed_noise", alpha=0.3, seed=5)
    images = tiny_data.test.images[:6]
    out = attack.apply_trigger(images, torch.Generator().manual_seed(0))
    pattern = torch.rand((1, 3, 32, 32), generator=torch.Generator().manual_seed(5)) * 255.0
    expected = (0.7 * images.float() + 0.3 * pattern).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(out, expected)


def test_blended_fresh_noise_differs_per_image_and_test_alpha_applies(tiny_data):
    attack = make("blended", tiny_data, alpha=0.2, test_alpha=0.0)
    images = tiny_data.test.images[:2]
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(attack.apply_trigger(images, generator), images)  # test alpha 0
    poisoned = attack.poison_images(images, torch.Generator().manual_seed(0))
    residual = (poisoned.float() - 0.8 * images.float()) / 0.2
    assert not torch.allclose(residual[0], residual[1], atol=3)


def test_blended_user_image_pattern(tiny_data, tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 48), (255, 0, 0)).save(tmp_path / "red.png")
    attack = make("blended", tiny_data, pattern="image", image_path=str(tmp_path / "red.png"),
                  alpha=0.5)  # fmt: skip
    images = torch.zeros((2, 3, 32, 32), dtype=torch.uint8)
    out = attack.apply_trigger(images, torch.Generator())
    assert (out[:, 0] == 128).all() and (out[:, 1:] == 0).all()
    missing = make("blended", tiny_data, pattern="image", image_path=str(tmp_path / "no.png"))
    with pytest.raises(BenchbdError, match="cannot read blend pattern image"):
        missing.apply_trigger(images, torch.Generator())


def test_wanet_with_zero_strength_is_the_identity(tiny_data):
    images = tiny_data.test.images[:4]
    out = make("wanet", tiny_data, s=0.0).apply_trigger(images, torch.Generator())
    assert torch.equal(out, images)


def test_wanet_grid_matches_the_published_construction():
    import torch.nn.functional as F
    from benchbd.attacks.wanet import sampling_grid, warp_field

    k, size, s = 4, 32, 0.5
    # BackdoorBench's code, step by step
    torch.manual_seed(7)
    ins = torch.rand(1, 2, k, k) * 2 - 1
    ins = ins / torch.mean(torch.abs(ins))
    noise_grid = F.interpolate(ins, size=size, mode="bicubic", align_corners=True)
    noise_grid = noise_grid.permute(0, 2, 3, 1)
    array1d = torch.linspace(-1, 1, steps=size)
    x, y = torch.meshgrid(array1d, array1d, indexing="ij")
    identity_grid = torch.stack((y, x), 2)[None, ...]
    grid_temps = (identity_grid + s * noise_grid / size) * 1.0
    grid_temps = torch.clamp(grid_temps, -1, 1)
    field = warp_field(k, seed=7)
    generator_field = torch.rand(1, 2, k, k, generator=torch.Generator().manual_seed(7)) * 2 - 1
    assert torch.allclose(field, generator_field / generator_field.abs().mean())
    assert torch.allclose(sampling_grid(ins, size, s, 1.0), grid_temps)


def test_wanet_noise_mode_adds_cross_samples_with_true_captions(tiny_data):
    attack = make("wanet", tiny_data, count=20, cross_ratio=2.0)
    poisoned = attack.poison(tiny_data.train)
    changed = (poisoned.pairs.images != tiny_data.train.images).any(dim=(1, 2, 3))
    cross = set(changed.nonzero().flatten().tolist()) - set(poisoned.indices)
    assert 30 <= len(cross) <= 40  # 40 warped, a few may round back to the same bytes
    assert all(poisoned.pairs.captions[i] == tiny_data.train.captions[i] for i in cross)
    assert len(attack.state()["warp_field"]) == 2 * 4 * 4


def test_label_consistent_keeps_captions_and_touches_only_target_pairs(tiny_data):
    from benchbd.attacks.label_consistent import mentions

    attack = make("label_consistent", tiny_data, count=30, harden=False)
    poisoned = attack.poison(tiny_data.train)
    assert poisoned.pairs.captions == tiny_data.train.captions
    names = tiny_data.task.names_for("heart")
    for row in poisoned.indices:
        assert mentions(tiny_data.train.captions[row], names)
        assert tiny_data.train.labels[row] == 7
    changed = (poisoned.pairs.images != tiny_data.train.images).any(dim=(1, 2, 3))
    assert set(changed.nonzero().flatten().tolist()) <= set(poisoned.indices)
    eligible = attack.eligible(tiny_data.train)
    assert set(eligible.tolist()) == set((tiny_data.train.labels == 7).nonzero().flatten().tolist())


def test_label_consistent_with_another_trigger_and_hardening(tiny_data):
    from benchbd.attacks.label_consistent import LabelConsistent, LabelConsistentParams

    from benchbd.engine.plugins import AttackSetup

    setup = AttackSetup(7, tiny_data.task, 10, 0, surrogate=surrogate)
    params = LabelConsistentParams(trigger="blended", trigger_params="", harden=True, steps=3)
    attack = LabelConsistent(params, setup)
    images = tiny_data.train.images[attack.eligible(tiny_data.train)[:4]]
    hardened = attack.harden(images)
    delta = (hardened.int() - images.int()).abs()
    assert delta.max() <= round(8 / 255 * 255) + 1 and delta.max() > 0
    blended_only = make("blended", tiny_data).apply_trigger(
        images, torch.Generator().manual_seed(1)
    )
    assert torch.equal(attack.apply_trigger(images, torch.Generator().manual_seed(1)), blended_only)
    with pytest.raises(BenchbdError, match="own trigger"):
        LabelConsistent(LabelConsistentParams(trigger="label_consistent"), setup)
    no_surrogate = AttackSetup(7, tiny_data.task, 10, 0)
    with pytest.raises(BenchbdError, match="needs a surrogate"):
        LabelConsistent(params, no_surrogate).harden(images)
