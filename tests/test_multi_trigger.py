"""Several triggers in one attack: the budget split on disjoint rows, each trigger captioned
with its own target, and each measured on its own (asr_<part>, ra_<part>) through the real
pipeline, its result file and its table."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.core.errors import BenchbdError
from benchbd.core.params import build
from benchbd.core.results import read_result
from benchbd.core.seeds import substream
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.evaluate import evaluate, part_stream
from benchbd.engine.model import create_clip
from benchbd.engine.pipeline import run
from benchbd.engine.plugins import (
    AttackSetup,
    DefenseContext,
    Screening,
    ScreeningDefense,
    TrainingPairs,
    TriggerPart,
    attacks,
    defenses,
)
from benchbd.engine.run_config import RunConfig
from benchbd.reporting.leaderboard import tabulate

SIZES = DataSizes(train=256, clean=128, test=60, validation=0)
PRETRAIN = {"epochs": 1, "batch_size": 32}
WHITE = "badnet:pattern=white,location=bottom_right"  # a patch a known-trigger scan can find
SIDE = 8  # badnet's default patch at 32 px


def make(data, count=21, target=7, **params):
    cls = attacks.get("multi_trigger")
    setup = AttackSetup(target, data.task, count, seed=0)
    return cls(build(cls.Params, params, "multi_trigger"), setup)


def test_poisoning_splits_the_budget_on_disjoint_rows_captioned_per_target(tiny_data):
    other = tiny_data.task.classnames[2]
    attack = make(tiny_data, targets=f",{other}", trigger_params=WHITE)
    rows = attack.split(tiny_data.train)
    poisoned = attack.poison(tiny_data.train)
    assert [len(r) for r in rows.values()] == [11, 10]  # the first trigger takes the remainder
    assert not set(rows["badnet"]) & set(rows["blended"])
    assert poisoned.indices == sorted(rows["badnet"] + rows["blended"])
    labels, images = tiny_data.train.labels, poisoned.pairs.images
    for name, target in (("badnet", 7), ("blended", 2)):
        assert (labels[rows[name]] != target).all()
        prompts = set(tiny_data.task.prompts(tiny_data.task.classnames[target]))
        assert all(poisoned.pairs.captions[r] in prompts for r in rows[name])
    corner = (images[:, :, -SIDE:, -SIDE:] == 255).flatten(1).all(dim=1)
    assert corner[rows["badnet"]].all() and not corner[rows["blended"]].any()
    untouched = sorted(set(range(len(labels))) - set(poisoned.indices))
    assert torch.equal(images[untouched], tiny_data.train.images[untouched])
    assert [poisoned.pairs.captions[r] for r in untouched] == [
        tiny_data.train.captions[r] for r in untouched
    ]
    parts = attack.trigger_parts()
    assert {name: part.target for name, part in parts.items()} == {"badnet": 7, "blended": 2}
    state = attack.state()["parts"]
    assert state["blended"]["target_name"] == other and state["badnet"]["count"] == 11


def test_each_part_is_measured_on_its_own_and_the_headline_is_their_mean(tiny_data):
    attack = make(tiny_data, targets=f",{tiny_data.task.classnames[2]}")
    clip, test, task = create_clip(seed=0), tiny_data.test, tiny_data.task
    parts = attack.trigger_parts()
    measured = evaluate(clip, test, task, 7, attack.apply_trigger, seed=5, parts=parts)
    fields = measured.to_dict()
    for name, part in parts.items():
        alone = evaluate(clip, test, task, part.target, part.trigger,
                         seed=substream(5, part_stream(name)))  # fmt: skip
        assert (fields[f"asr_{name}"], fields[f"ra_{name}"]) == (alone.asr, alone.ra)
    assert measured.asr == pytest.approx((fields["asr_badnet"] + fields["asr_blended"]) / 2)
    assert measured.ra == pytest.approx((fields["ra_badnet"] + fields["ra_blended"]) / 2)
    assert measured.n_triggered == int((test.labels != 7).sum() + (test.labels != 2).sum())
    # one trigger: the fields it always had, and no others
    single = evaluate(clip, test, task, 7, attack.apply_trigger, seed=5)
    assert set(single.to_dict()) == {"ca", "asr", "ra", "n_test", "n_triggered",
                                     "classifier", "ca_top5"}  # fmt: skip
    bad = {"a.b": TriggerPart(attack.apply_trigger, 7)}
    with pytest.raises(BenchbdError, match="letters, digits and underscores"):
        evaluate(clip, test, task, 7, None, seed=5, parts=bad)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"triggers": "badnet,blendd"}, "did you mean 'blended'"),
        ({"triggers": "badnet,none"}, "'none' has no trigger"),
        ({"triggers": "badnet,multi_trigger"}, "cannot use 'multi_trigger'"),
        ({"triggers": "badnet,badnet"}, "named once"),
        ({"triggers": "badnet,"}, "must name attacks"),
        ({"targets": "nosuchclass,"}, "target 'nosuchclass'"),
        ({"targets": "0"}, "1 classes for 2 triggers"),
        ({"trigger_params": "wanet:s=2"}, "NAME one of the triggers"),
        ({"trigger_params": "badnet:turnr"}, "did you mean 'turner'"),
        ({"trigger_params": "blended:alpha=2"}, "trigger 'blended'"),
    ],
)
def test_bad_triggers_and_targets_are_one_line_errors(tiny_data, params, message):
    with pytest.raises(BenchbdError, match=message) as caught:
        make(tiny_data, **params)
    assert "\n" not in str(caught.value)


def test_a_bad_target_is_refused_by_the_cli_before_any_training(tmp_path):
    tiny = ["--train-pairs", "256", "--clean-pairs", "128", "--test-images", "60",
            "--validation-images", "0"]  # fmt: skip
    made = CliRunner().invoke(app, ["run", "--attack", "multi_trigger", "--defense", "none",
                                    "--param", "targets=badnet_class,", "--out", str(tmp_path),
                                    *tiny])  # fmt: skip
    assert made.exit_code == 2, made.output
    last = made.output.strip().splitlines()[-1]
    assert last.startswith("benchbd: error: multi_trigger: target 'badnet_class'"), made.output
    assert "Traceback" not in made.output and not list(tmp_path.iterdir())


class CornerScan(ScreeningDefense):
    """Drops the training images whose bottom-right square is pure white: exactly the rows
    the white badnet part poisoned, and none of the blended part's."""

    description = "Screen: drop the images whose bottom-right square is pure white."

    def screen(self, training: TrainingPairs, context: DefenseContext) -> Screening:
        corner = training.pairs.images[:, :, -SIDE:, -SIDE:]
        scores = (corner == 255).flatten(1).float().mean(dim=1)
        return Screening(scores, torch.nonzero(scores == 1.0).flatten().tolist())


@pytest.fixture
def corner_scan():
    defenses.register("corner_scan", CornerScan, package="tests")
    yield
    defenses.unregister("corner_scan")


def config(defense: str, **changes) -> RunConfig:
    return RunConfig(attack="multi_trigger", defense=defense, poison_rate=0.08, sizes=SIZES,
                     attack_params={"trigger_params": WHITE}, pretrain=PRETRAIN, device="cpu",
                     **changes)  # fmt: skip


@pytest.mark.slow
def test_a_run_records_each_part_and_the_table_shows_them(tmp_path, corner_scan, tiny_data):
    result = run(config("none"), out=tmp_path)
    for when in ("before", "after"):
        metrics = result.metrics[when]
        for metric in ("asr", "ra"):
            parts = [metrics[f"{metric}_badnet"], metrics[f"{metric}_blended"]]
            assert all(0 <= value <= 1 for value in parts)
            assert metrics[metric] == pytest.approx(sum(parts) / 2)
    assert read_result(tmp_path / result.filename)["metrics"] == result.metrics
    assert set(result.extra["attack_state"]["parts"]) == {"badnet", "blended"}
    shown = CliRunner().invoke(app, ["table", str(tmp_path), "--format", "csv", "--columns",
                                     "after_asr_badnet,after_ra_blended"])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    header, row = shown.stdout.splitlines()[:2]
    assert "after_asr_badnet_mean" in header and "after_ra_blended_mean" in header
    value = float(row.split(",")[header.split(",").index("after_asr_badnet_mean")])
    assert value == pytest.approx(result.metrics["after"]["asr_badnet"])
    # per-part ASR is better low, per-part RA better high, as their headline metrics
    board = tabulate([read_result(tmp_path / result.filename)], sort="after_ra_blended",
                     columns=["after_asr_badnet", "after_ra_blended"])  # fmt: skip
    assert not any("declares no direction" in w for w in board.warnings)

    # a screen's detection numbers count every part's rows as poisoned
    screened = run(config("corner_scan"), out=tmp_path / "screen")
    detection = screened.metrics["detection"]
    count = screened.poison["count"]
    assert len(screened.poison["indices"]) == count
    assert detection["poisons_removed"] == pytest.approx(math.ceil(count / 2) / count)
    assert detection["clean_lost"] == 0.0


@pytest.mark.slow
def test_streamed_evaluation_measures_each_part_as_in_memory(tmp_path, monkeypatch):
    """Parts whose triggers draw nothing at random: read from disk in batches of 5 or held in
    memory, the same per-part numbers."""
    from conftest import write_folder, write_pairs

    from benchbd.engine.data.pairs import PairSet
    from benchbd.engine.data.sources import load_data
    from benchbd.engine.evaluate import evaluate_streamed

    monkeypatch.setenv("BENCHBD_WORKERS", "0")
    write_folder(tmp_path / "val")
    spec = (f"csv:{write_pairs(tmp_path / 'cc')}|eval=imagefolder:{tmp_path / 'val'}"
            "?classes=classes.json")  # fmt: skip
    data = load_data(spec, DataSizes(train=0, clean=8, test=0), image_size=32)
    attack = make(data, count=0, target=2, triggers="badnet,wanet", targets=",green",
                  trigger_params="badnet:pattern=checkerboard,location=top_left")  # fmt: skip
    parts, clip = attack.trigger_parts(), create_clip(seed=3)
    in_memory = PairSet(data.test.images[:], list(data.test.captions), data.test.labels)
    a = evaluate(clip, in_memory, data.task, 2, attack.apply_trigger, seed=1, parts=parts)
    b = evaluate_streamed(clip, data.test, data.task, 2, attack.apply_trigger, 1, batch_size=5,
                          parts=parts)  # fmt: skip
    streamed = b.to_dict()
    assert streamed.pop("ca_top5") is not None  # measured on a streamed set of 6 classes only
    assert {**a.to_dict(), "ca_top5": None} == {**streamed, "ca_top5": None}
    assert {"asr_badnet", "ra_wanet"} <= set(streamed)
