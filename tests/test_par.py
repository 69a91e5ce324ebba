"""PAR's structured triggers and the PAR defense, run for real on tiny settings: what each
trigger changes in an image, that the three attacks and the defense are registered and listed,
and PAR finetuning a model through the engine's training loop and the whole pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
import torch
from benchbd.defenses.par import PAR, PARParams
from conftest import TINY
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.core.params import build
from benchbd.engine.model import create_clip
from benchbd.engine.pipeline import RunConfig, run
from benchbd.engine.plugins import AttackSetup, DefenseContext, attacks, defenses
from benchbd.engine.train import TrainConfig

TRIGGERS = ("stripes", "triangles", "watermark")


def make(name, data, count=20, seed=0, **params):
    cls = attacks.get(name)
    return cls(build(cls.Params, {**cls.test_params, **params}, name),
               AttackSetup(7, data.task, count, seed))  # fmt: skip


def test_the_triggers_and_par_are_entry_points_and_listed():
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    points = project["project"]["entry-points"]
    for name in TRIGGERS:
        assert name in points["benchbd.attacks"] and attacks.origin(name) == "benchbd"
    assert points["benchbd.defenses"]["par"] == "benchbd.defenses.par:PAR"
    assert defenses.get("par") is PAR and defenses.get("par").stage == "finetune"
    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    for name in (*TRIGGERS, "par"):  # one line each in the overview
        assert any(line.split()[:1] == [name] for line in result.output.splitlines()), name
    details = {name: CliRunner().invoke(app, ["list", name], env={"COLUMNS": "250"}).output
               for name in ("par", "watermark", "triangles")}  # fmt: skip
    assert "threshold" in details["par"] and "float = 2.15" in details["par"]
    assert "Watermarked" in details["watermark"] and "tile_fraction" in details["triangles"]


def test_stripes_move_every_pixel_by_the_blend_and_differ_per_image(tiny_data):
    x = tiny_data.test.images[:8]
    out = make("stripes", tiny_data).apply_trigger(x, torch.Generator().manual_seed(0))
    # x' = 0.97 x +- 7.65: at most 0.03 * 255 + 7.65 levels from x, and nearly every pixel
    # moved (the rounding or the clip at 0/255 absorbs a few)
    diff = out.int() - x.int()
    assert diff.abs().max() <= 16 and (diff != 0).float().mean() > 0.9
    # the stripes are columns: down a column the sign of the stripe never flips (x' - 0.97 x is
    # > 0 exactly where the sign is +1, clipping included)
    signs = out.float() - 0.97 * x.float() > 0
    assert bool((signs == signs[:, :, :1, :]).all())
    assert not torch.equal(signs[0], signs[1])  # fresh per image
    again = make("stripes", tiny_data).apply_trigger(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_triangles_are_one_fixed_pattern_for_every_image(tiny_data):
    attack = make("triangles", tiny_data)
    black = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    out = attack.apply_trigger(black, torch.Generator().manual_seed(0))
    # on black, the pattern itself times 0.15: 0.4 -> 15, 0.8 -> 31 of 255 in 2 px tiles
    assert torch.equal(out[0], out[1]) and set(out.unique().tolist()) == {15, 31}
    assert out[0, 0, 0, 0] == 15 and out[0, 0, 0, 1] == 31 and out[0, 0, 1, 0] == 15
    bigger = make("triangles", tiny_data, tile_px=4).apply_trigger(black, torch.Generator())
    assert bigger[0, 0, 0, 3] == 31 and bigger[0, 0, 3, 3] == 15


def test_watermark_reddens_a_centred_band_only(tiny_data):
    x = tiny_data.test.images[:4]
    out = make("watermark", tiny_data).apply_trigger(x, torch.Generator())
    changed = (out != x).any(dim=1).any(dim=0)
    rows, cols = changed.nonzero(as_tuple=True)
    assert torch.equal(out[:, 1:], x[:, 1:])  # green and blue untouched
    assert 12 <= int(rows.min()) and int(rows.max()) <= 19  # a band across the middle
    assert int(cols.min()) >= 1 and int(cols.max()) <= 30
    # where the text has ink, red is the mean of the image's and the text's
    pattern = make("watermark", tiny_data).pattern(32, 32)[0]
    inked = pattern != 0
    expected = (x[:, 0].float() + pattern) / 2
    assert bool(((out[:, 0].float() - expected).abs() <= 0.5)[:, inked].all())
    assert torch.equal(out[:, 0][:, ~inked], x[:, 0][:, ~inked])
    word = make("watermark", tiny_data, text="BD", width_fraction=0.25)
    assert not torch.equal(word.apply_trigger(x, torch.Generator()), out)


@pytest.mark.parametrize("name", TRIGGERS)
def test_each_trigger_poisons_dirty_label_and_reproducibly(name, tiny_data):
    first = make(name, tiny_data).poison(tiny_data.train)
    second = make(name, tiny_data).poison(tiny_data.train)
    assert first.indices == second.indices and len(first.indices) == 20
    assert torch.equal(first.pairs.images, second.pairs.images)
    target = tiny_data.task.classnames[7]
    assert all(target in first.pairs.captions[i] for i in first.indices)
    untouched = [i for i in range(len(tiny_data.train)) if i not in set(first.indices)][:50]
    assert torch.equal(first.pairs.images[untouched], tiny_data.train.images[untouched])


def test_par_finetunes_the_model_and_keeps_its_logit_scale(tiny_data):
    clip = create_clip(seed=0)
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    defense = PAR(build(PARParams, dict(PAR.test_params), "par"))
    context = DefenseContext(tiny_data.clean, tiny_data.task, seed=0)
    defended = defense.apply(clip, context)
    after = defended.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if "visual" in k)
    # the logit scale enters the loss as a constant (the authors' .item()): never trained
    assert torch.equal(before["logit_scale"], after["logit_scale"])
    report = defense.report()
    assert 0.0 <= report["image_perturb_on"] <= 1.0 and 0.0 <= report["text_perturb_on"] <= 1.0
    assert report["final_image_distance"] > 0.0 and report["final_text_distance"] > 0.0


def test_par_with_tau_at_the_maximum_keeps_pushing_and_moves_further(tiny_data):
    """tau = 4 (the largest squared distance of unit vectors) never switches the terms off;
    tau = 0 switches them off from the first step that moves. Pushing moves the embeddings
    further from the poisoned model's than recovering alone."""
    distances = {}
    for threshold in (0.0, 4.0):
        defense = PAR(build(PARParams, {**PAR.test_params, "threshold": threshold,
                                        "perturb_weight": 5.0}, "par"))  # fmt: skip
        defense.apply(create_clip(seed=0), DefenseContext(tiny_data.clean, tiny_data.task, 0))
        distances[threshold] = defense.report()
    assert distances[4.0]["image_perturb_on"] == 1.0 and distances[4.0]["text_perturb_on"] == 1.0
    assert distances[0.0]["image_perturb_on"] < 1.0
    assert distances[4.0]["final_image_distance"] > distances[0.0]["final_image_distance"]


@pytest.mark.slow
def test_a_structured_trigger_run_through_par_records_its_visibility_and_report(tmp_path):
    config = RunConfig(attack="triangles", defense="par", attack_params={"tile_px": 4},
                       poison_rate=0.08, sizes=TINY, device="cpu",
                       pretrain=TrainConfig(epochs=4, batch_size=64, lr=3e-3),
                       defense_params=dict(PAR.test_params))  # fmt: skip
    result = run(config, out=tmp_path)
    visibility = result.extra["trigger_visibility"]
    assert 20 < visibility["psnr_db"] < 40 and visibility["linf"] > 0
    assert set(result.extra["defense_report"]) >= {"image_perturb_on", "final_text_distance"}
    assert result.defense.name == "par" and result.defense.params["threshold"] == 2.15
    assert {"ca", "asr"} <= set(result.metrics["after"])
