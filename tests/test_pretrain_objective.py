"""The pretraining objective as an axis: CLIP alone (inmodal_weight 0, every existing result) or
CLIP plus in-modal self-supervised terms; its fingerprint, its record, its table column."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from benchbd.defenses.cleanclip import CleanCLIPObjective, CleanCLIPParams, cleanclip_loss
from conftest import TINY
from test_cli import invoke, one_line_error

from benchbd.core import results
from benchbd.core.errors import BenchbdError
from benchbd.core.seeds import substream
from benchbd.engine import train
from benchbd.engine.augment import ImageViews, TextViews, table_synonyms
from benchbd.engine.grid import load_grid
from benchbd.engine.model import create_clip
from benchbd.engine.objectives import ClipInModalObjective, pretraining_objective
from benchbd.engine.planning import plan
from benchbd.engine.run_config import RunConfig
from benchbd.engine.train import Batch, TrainConfig, clip_loss, contrastive_objective
from benchbd.reporting.leaderboard import group_text, leaderboard

TINY_RUN = ["run", "--defense", "none", "--train-pairs", "256", "--clean-pairs", "64",
            "--test-images", "64", "--validation-images", "0", "--epochs", "1",
            "--batch-size", "64"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_batch(tiny_data):
    pairs = tiny_data.train.subset(torch.arange(16))
    clip = create_clip(seed=0)
    clip.model.eval()  # features independent of the batch they are computed in
    batch = Batch(pairs.images, list(pairs.captions), clip.tokenize(list(pairs.captions)),
                  pairs.labels, step=3)  # fmt: skip
    return clip, batch


def features(clip, images: torch.Tensor, captions: list[str]):
    model = clip.model
    image = model.encode_image(clip.normalize(images), normalize=True)
    text = model.encode_text(clip.tokenize(captions), normalize=True)
    return image, text


def test_weight_zero_is_the_plain_clip_loss(tiny_data, tiny_batch):
    clip, batch = tiny_batch
    objective = pretraining_objective(TrainConfig(), tiny_data.task, seed=5)
    assert objective is contrastive_objective  # not merely equal: the same code as before
    with torch.no_grad():
        image, text = features(clip, batch.images, batch.captions)
        expected = clip_loss(image, text, clip.model.logit_scale.exp())
        assert objective(clip, batch).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_a_positive_weight_adds_the_in_modal_terms(tiny_data, tiny_batch, weight):
    clip, batch = tiny_batch
    seed = 11
    objective = pretraining_objective(TrainConfig(inmodal_weight=weight), tiny_data.task, seed)
    assert isinstance(objective, ClipInModalObjective)
    step_seed = substream(seed, f"views:{batch.step}")
    views = ImageViews()(batch.images, step_seed)
    view_captions = TextViews(table_synonyms(tiny_data.task.synonym_groups))(
        batch.captions, step_seed
    )
    assert not torch.equal(views, batch.images) and view_captions != batch.captions
    with torch.no_grad():
        got = objective(clip, batch).item()
        image, text = features(clip, batch.images, batch.captions)
        image_views, text_views = features(clip, views, view_captions)
        scale = clip.model.logit_scale.exp()
        labels = torch.arange(len(image))
        inmodal = (F.cross_entropy(scale * image @ image_views.T, labels)
                   + F.cross_entropy(scale * text @ text_views.T, labels)) / 2  # fmt: skip
        clip_only = clip_loss(image, text, scale)
    assert inmodal.item() > 0.01
    assert got == pytest.approx((clip_only + weight * inmodal).item(), rel=1e-4)


def test_cleanclip_uses_the_engine_loss_unchanged():
    assert CleanCLIPObjective is ClipInModalObjective
    i, t, ia, ta = (F.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(k)),
                                dim=-1) for k in range(4))  # fmt: skip
    scale = torch.tensor(10.0)
    labels = torch.arange(6)
    direct = (clip_loss(i, t, scale) + 0.5 * (F.cross_entropy(scale * i @ ia.T, labels)
              + F.cross_entropy(scale * t @ ta.T, labels)) / 2)  # fmt: skip
    assert cleanclip_loss(i, t, ia, ta, scale, 1.0, 0.5).item() == pytest.approx(direct.item())


def test_the_recipe_records_the_weight_only_when_set():
    assert "inmodal_weight" not in TrainConfig().to_dict()
    assert TrainConfig(inmodal_weight=0).to_dict() == TrainConfig().to_dict()
    assert TrainConfig(inmodal_weight=1).to_dict()["inmodal_weight"] == 1.0
    # A defense's recipe never takes the pretraining weight, even from a same-named parameter.
    defense_recipe = TrainConfig.from_recipe(CleanCLIPParams())
    assert CleanCLIPParams().inmodal_weight == 1.0 and defense_recipe.inmodal_weight == 0.0
    assert "inmodal_weight" not in defense_recipe.to_dict()
    # Readers fill in exactly what the recipe leaves out.
    recipe_fields = {f"pretrain.{name}": v for name, v in train.RECIPE_OMITTED_AT_DEFAULT.items()}
    assert results.OMITTED_AT_DEFAULT == recipe_fields
    assert set(TrainConfig().to_dict()).isdisjoint(train.RECIPE_OMITTED_AT_DEFAULT)


def test_the_fingerprint_changes_only_for_a_positive_weight():
    def fingerprints(**pretrain):
        return plan(RunConfig(sizes=TINY, pretrain={"epochs": 1, **pretrain}))

    clip_only = fingerprints()
    assert fingerprints(inmodal_weight=0) == clip_only
    assert fingerprints(inmodal_weight=0.0) == clip_only
    weighted = fingerprints(inmodal_weight=1)
    assert weighted[0] != clip_only[0] and weighted[1] != clip_only[1]
    assert fingerprints(inmodal_weight=1.0) == weighted  # 1 and 1.0 are one setting
    assert fingerprints(inmodal_weight=0.5)[0] not in (clip_only[0], weighted[0])


@pytest.mark.parametrize("value, message", [(-1, "inmodal_weight must be >= 0"),
                                            (float("nan"), "finite"), (float("inf"), "finite"),
                                            ("1", "must be float")])  # fmt: skip
def test_bad_weights_are_refused(value, message):
    with pytest.raises(BenchbdError, match=message):
        RunConfig(sizes=TINY, pretrain={"inmodal_weight": value})


@pytest.mark.parametrize("value, message", [("-1", "inmodal_weight must be >= 0"),
                                            ("nan", "finite"), ("inf", "finite")])  # fmt: skip
def test_bad_weights_on_the_command_line_are_one_line(tmp_path, value, message):
    out = tmp_path / "results"
    line = one_line_error(invoke(*TINY_RUN, "--inmodal-weight", value, "--out", str(out)))
    assert message in line
    sweep = invoke("sweep", "--attacks", "badnet", "--defenses", "none",
                   "--inmodal-weight", value, "--out", str(out))  # fmt: skip
    assert message in one_line_error(sweep)
    assert not out.exists() or not list(out.iterdir())


def test_a_grid_sets_the_weight_and_refuses_a_bad_one(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('attacks = ["badnet"]\ndefenses = ["none"]\n[pretrain]\ninmodal_weight = 1\n')
    (cell,) = load_grid(path).cells()
    assert cell.pretrain.inmodal_weight == 1.0
    path.write_text('attacks = ["badnet"]\n[pretrain]\ninmodal_weight = -0.5\n')
    with pytest.raises(BenchbdError, match="inmodal_weight must be >= 0") as raised:
        load_grid(path)
    assert "\n" not in str(raised.value)


def test_a_run_records_the_weight_and_the_table_groups_by_it(tmp_path):
    out = tmp_path / "results"
    for extra in (["--inmodal-weight", "1"], []):
        ran = invoke(*TINY_RUN, *extra, "--out", str(out))
        assert ran.exit_code == 0, ran.output
    files = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    recorded = sorted(str(f["pretrain"].get("inmodal_weight")) for f in files)
    assert recorded == ["1.0", "None"]  # the CLIP-only file has no new field at all
    by_weight = {group_text(f, "pretrain.inmodal_weight"): f for f in files}
    assert set(by_weight) == {"0", "1"}
    models = {weight: f["poisoned_model_fingerprint"] for weight, f in by_weight.items()}
    assert models["1"] != models["0"]

    rows = leaderboard(files, group_by=["pretrain.inmodal_weight"])
    assert sorted(row.groups for row in rows) == [("0",), ("1",)]
    table = invoke("table", str(out), "--group-by", "pretrain.inmodal_weight", "--format", "csv")
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].startswith("pretrain.inmodal_weight,attack,defense")
    assert sorted(line.split(",")[0] for line in lines[1:] if line) == ["0", "1"]
    # Without --group-by the two pretraining objectives are still never averaged together.
    assert len(leaderboard(files)) == 2
