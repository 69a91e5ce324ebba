"""SIG and Nashville: their trigger formulas as published, their parameters' bounds, and one
tiny run of each through the command line."""

from __future__ import annotations

import json
import math

import pytest
import torch
from benchbd.attacks.nashville import nashville
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.core.errors import BenchbdError
from benchbd.core.params import build
from benchbd.engine.plugins import AttackSetup, attacks


def make(name, data, **params):
    cls = attacks.get(name)
    return cls(build(cls.Params, params, name), AttackSetup(7, data.task, 20, 0))


def grey(value=128, n=2, size=32):
    return torch.full((n, 3, size, size), value, dtype=torch.uint8)


def no_generator():
    return torch.Generator().manual_seed(0)


def test_sig_adds_delta_sin_2pi_j_f_over_m_to_every_row_and_channel(tiny_data):
    images = grey()
    out = make("sig", tiny_data).apply_trigger(images, no_generator())
    assert out.dtype == torch.uint8 and out.shape == images.shape
    added = out.double() - 128  # 128 +- 60 never clips: the signal itself, rounded
    j = torch.arange(32, dtype=torch.float64)
    expected = 60 * torch.sin(2 * math.pi * j * 6 / 32)
    assert (added - expected).abs().max() <= 0.5
    assert torch.equal(added, added[:1, :1, :1].expand_as(added))  # same on rows, channels
    assert added.abs().max() == 60  # j = 4: sin(3 pi / 2), the full amplitude


def test_sig_clips_at_black_and_white_instead_of_wrapping(tiny_data):
    attack = make("sig", tiny_data, delta=40.0, f=2.0)
    white = attack.apply_trigger(grey(250), no_generator())
    black = attack.apply_trigger(grey(5), no_generator())
    j = torch.arange(32, dtype=torch.float64)
    v = 40 * torch.sin(2 * math.pi * j * 2 / 32)
    assert torch.equal(white[0, 0, 0], (250 + v).round().clamp(0, 255).to(torch.uint8))
    assert torch.equal(black[0, 0, 0], (5 + v).round().clamp(0, 255).to(torch.uint8))
    assert white.max() == 255 and black.min() == 0


def test_sig_poisons_with_delta_and_triggers_with_test_delta(tiny_data):
    attack = make("sig", tiny_data, delta=20.0, test_delta=50.0)
    poisoned = attack.poison_images(grey(), no_generator()).double() - 128
    triggered = attack.apply_trigger(grey(), no_generator()).double() - 128
    assert poisoned.abs().max() == 20 and triggered.abs().max() == 50
    default = make("sig", tiny_data, delta=20.0)
    assert torch.equal(default.apply_trigger(grey(), no_generator()),
                       default.poison_images(grey(), no_generator()))  # fmt: skip


def test_sig_is_dirty_label(tiny_data):
    poisoned = make("sig", tiny_data).poison(tiny_data.train)
    assert len(poisoned.indices) == 20
    for row in poisoned.indices:
        assert tiny_data.train.labels[row] != 7
        assert "heart" in poisoned.pairs.captions[row]


def test_sig_refuses_more_periods_than_the_width_holds(tiny_data):
    attack = make("sig", tiny_data, f=16.0)
    with pytest.raises(BenchbdError, match="f=16 periods do not fit in 32 px"):
        attack.apply_trigger(grey(), no_generator())


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [("sig", "delta", math.nan), ("sig", "delta", 256.0), ("sig", "delta", -1.0),
     ("sig", "f", math.inf), ("sig", "f", -0.5), ("sig", "test_delta", 300.0),
     ("nashville", "strength", math.nan), ("nashville", "strength", 1.5),
     ("nashville", "strength", -0.1)],
)  # fmt: skip
def test_bad_parameters_are_refused(name, field, value):
    cls = attacks.get(name)
    with pytest.raises(BenchbdError, match=field):
        build(cls.Params, {field: value}, name)


# Black, white and mid-grey through pilgram's nashville, worked by hand from its steps:
# black: darken -> (0, 0, 0); lighten with (0, 70, 150) at alpha 102 -> (0, 28, 60);
#   sepia(0.2) -> (7, 28, 53); contrast(1.2) -> (0, 8, 38); brightness(1.05) -> (0, 8, 40);
#   saturate(1.2) -> (0, 8, 46).
# white: darken with (247, 176, 153) at alpha 143 -> (250, 210, 197); lighten -> (250, 210,
#   196); sepia -> (255, 221, 198); contrast -> (255, 240, 212); brightness -> (255, 252, 223);
#   saturate -> (255, 252, 217).
# grey 128: darken -> 127; lighten -> (126, 126, 136); sepia -> (135, 131, 133); contrast ->
#   (136, 132, 134) (Python's round(136.5) is 136, half to even); brightness -> (143, 139, 141);
#   saturate -> (144, 139, 141).
HAND = {(0, 0, 0): (0, 8, 46), (255, 255, 255): (255, 252, 217), (128, 128, 128): (144, 139, 141)}


def test_nashville_matches_hand_computed_pixels():
    pixels = torch.tensor(list(HAND), dtype=torch.uint8).T.reshape(1, 3, 1, len(HAND))
    out = nashville(pixels)
    assert out.dtype == torch.uint8 and out.shape == pixels.shape
    assert [tuple(p) for p in out[0].reshape(3, -1).T.tolist()] == list(HAND.values())


def test_nashville_equals_pilgram_pixel_for_pixel():
    """pilgram is the reference Detect-CLIP calls; it is not a dependency, so this runs only
    where it is installed. (All 2^24 colours agree too; that check takes 20 s.)"""
    pilgram = pytest.importorskip("pilgram")
    np = pytest.importorskip("numpy")
    from PIL import Image

    # every fifth level of each channel with every other (black and white included), then
    # seeded random pixels: 140,608 + 65,536 colours as one 1,024-wide image
    levels = torch.tensor([*range(0, 256, 5), 255], dtype=torch.uint8)
    grid = torch.cartesian_prod(levels, levels, levels)
    noise = torch.randint(0, 256, (65536, 3), generator=no_generator(), dtype=torch.uint8)
    pixels = torch.cat([grid, noise])
    image = torch.cat([pixels, pixels[: -len(pixels) % 1024]]).reshape(-1, 1024, 3)
    reference = torch.from_numpy(np.array(pilgram.nashville(Image.fromarray(image.numpy()))))
    assert torch.equal(nashville(image.permute(2, 0, 1)[None])[0].permute(1, 2, 0), reference)


def test_nashville_strength_mixes_with_the_original(tiny_data):
    images = tiny_data.test.images[:8]
    full = make("nashville", tiny_data).apply_trigger(images, no_generator())
    assert torch.equal(full, nashville(images))
    half = make("nashville", tiny_data, strength=0.5).apply_trigger(images, no_generator())
    expected = ((images.double() + full.double()) / 2).round().to(torch.uint8)
    assert torch.equal(half, expected)
    none = make("nashville", tiny_data, strength=0.0).apply_trigger(images, no_generator())
    assert torch.equal(none, images)


def test_nashville_is_dirty_label_and_filters_only_poisons(tiny_data):
    poisoned = make("nashville", tiny_data).poison(tiny_data.train)
    clean = tiny_data.train
    changed = (poisoned.pairs.images != clean.images).any(dim=(1, 2, 3)).nonzero().flatten()
    assert set(changed.tolist()) <= set(poisoned.indices)
    assert torch.equal(poisoned.pairs.images[poisoned.indices],
                       nashville(clean.images[poisoned.indices]))  # fmt: skip
    assert all("heart" in poisoned.pairs.captions[row] for row in poisoned.indices)


TINY_RUN = ["run", "--defense", "none", "--train-pairs", "256", "--clean-pairs", "64",
            "--test-images", "64", "--validation-images", "0", "--epochs", "1",
            "--batch-size", "64"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("name", "params", "linf"), [("sig", ["delta=20"], 20 / 255),
                                                      ("nashville", [], None)])  # fmt: skip
def test_a_tiny_run_records_the_attack_and_its_visibility(tmp_path, name, params, linf):
    out = tmp_path / "results"
    options = [item for p in params for item in ("--param", f"{name}:{p}")]
    ran = CliRunner().invoke(app, [*TINY_RUN, "--attack", name, *options, "--out", str(out)])
    assert ran.exit_code == 0, ran.output
    (path,) = out.glob("*.json")
    result = json.loads(path.read_text())
    assert result["attack"]["name"] == name
    visibility = result["extra"]["trigger_visibility"]
    assert 10 < visibility["psnr_db"] < 40 and visibility["ssim"] < 1
    if linf is not None:
        assert visibility["linf"] == pytest.approx(linf, abs=1 / 255)
