"""The input stage: a detector scores evaluation images at test time and flagged inputs are
rejected. Its threshold is fixed on clean validation images (at most 5 % flagged there); the
detection is measured on the clean and triggered test images; the "after" CA and ASR count a
rejected clean image as not correctly classified and a rejected triggered image as not
attacked. Every built-in detector keeps the contract: one finite score per image, the same
whatever batch the image is scored in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import builtin, write_folder, write_pairs
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.core.errors import BenchbdError
from benchbd.core.params import build
from benchbd.core.results import read_result
from benchbd.engine.data.images import is_streamed
from benchbd.engine.data.pairs import PairSet
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data
from benchbd.engine.evaluate import evaluate, predict, zero_shot_weights
from benchbd.engine.input_stage import REJECT_FPR, detect_inputs, rejection_threshold
from benchbd.engine.model import create_clip
from benchbd.engine.pipeline import run
from benchbd.engine.plugins import DefenseContext, InputDetector, defenses, stage_of
from benchbd.engine.run_config import RunConfig

SIDE = 4
TARGET = 7
INPUT_DETECTORS = ("strip", "scale_up", "bdetclip", "kdistance_input")


def white_corner(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    out = images.clone()
    out[:, :, -SIDE:, -SIDE:] = 255
    return out


class CornerCheck(InputDetector):
    """A known-trigger check: the share of pure-white pixels in the bottom-right square."""

    description = "Input detection: flag images whose bottom-right square is pure white."

    def score(self, clip, images, context):
        return (images[:, :, -SIDE:, -SIDE:] == 255).flatten(1).float().mean(dim=1)


class FlagsAll(InputDetector):
    """Scores every image the same: nothing is above the threshold, nothing is rejected."""

    description = "Input detection: one score for every image."

    def score(self, clip, images, context):
        return torch.zeros(len(images))


@pytest.fixture(scope="module")
def clip():
    model = create_clip(seed=0)
    model.model.eval()  # as the input stage hands it over
    return model


def context_of(data) -> DefenseContext:
    return DefenseContext(data.clean, data.task, seed=0)


def test_the_threshold_flags_at_most_five_percent_of_the_clean_validation_scores():
    scores = np.arange(100, dtype=float)
    threshold = rejection_threshold(scores)
    assert threshold == 94.0 and np.mean(scores > threshold) == REJECT_FPR
    # ties: a score shared by many images is never split, so the share stays at most 5 %
    tied = np.array([0.0] * 90 + [1.0] * 10)
    assert rejection_threshold(tied) == 1.0 and np.mean(tied > 1.0) == 0.0
    assert rejection_threshold(np.array([3.0])) == 3.0
    with pytest.raises(BenchbdError, match="no clean validation image"):
        rejection_threshold(np.array([]))


def test_an_oracle_detector_rejects_every_triggered_image_and_ca_counts_rejections(
    tiny_data, clip
):
    found = detect_inputs(CornerCheck(build(CornerCheck.Params, {}, "c")), clip,
                          context_of(tiny_data), tiny_data.validation, tiny_data.test,
                          tiny_data.task, TARGET, white_corner, seed=0)  # fmt: skip
    detection, after = found.detection, found.after
    assert detection["auroc"] == 1.0 and detection["tpr_at_1fpr"] == 1.0
    assert detection["poisons_removed"] == 1.0 and after.asr == 0.0 and after.ra == 0.0
    assert detection["validation_fpr"] <= REJECT_FPR
    # CA with rejection, recomputed: correct AND kept
    test = tiny_data.test
    kept = (test.images[:, :, -SIDE:, -SIDE:] == 255).flatten(1).float().mean(dim=1)
    kept = kept.numpy() <= detection["threshold"]
    correct = (predict(clip, test.images, zero_shot_weights(clip, tiny_data.task))
               == test.labels).numpy()  # fmt: skip
    assert after.ca == pytest.approx(float(np.mean(correct & kept)))
    assert detection["clean_lost"] == pytest.approx(1 - float(np.mean(kept)))
    assert detection["scored"] == len(test) + int((test.labels != TARGET).sum())
    assert detection["seconds_per_image"] >= 0 and found.report["roc"]["tpr"][1] == 1.0


def test_a_detector_that_rejects_nothing_leaves_the_metrics_as_evaluate_measures_them(
    tiny_data, clip
):
    found = detect_inputs(FlagsAll(build(FlagsAll.Params, {}, "f")), clip,
                          context_of(tiny_data), tiny_data.validation, tiny_data.test,
                          tiny_data.task, TARGET, white_corner, seed=0)  # fmt: skip
    plain = evaluate(clip, tiny_data.test, tiny_data.task, TARGET, white_corner, seed=0)
    assert found.after == plain
    assert found.detection["auroc"] == 0.5 and found.detection["dropped"] == 0


def test_the_stage_needs_a_validation_split(tiny_data, clip):
    with pytest.raises(BenchbdError, match="validation split"):
        detect_inputs(FlagsAll(build(FlagsAll.Params, {}, "f")), clip, context_of(tiny_data),
                      None, tiny_data.test, tiny_data.task, TARGET, white_corner, seed=0)


def test_a_test_set_read_from_disk_is_scored_batch_by_batch_as_evaluation_reads_it(
    tmp_path, monkeypatch
):
    """Validation and test images read from disk: a detector that rejects nothing leaves the
    streamed evaluation's numbers, and a detector finds what it finds in the same images
    held in memory."""
    monkeypatch.setenv("BENCHBD_WORKERS", "0")
    pairs, folder = write_pairs(tmp_path / "cc"), write_folder(tmp_path / "val", per_class=8)
    source = f"csv:{pairs}|eval=imagefolder:{folder}?classes=classes.json&templates=templates.txt"
    data = load_data(source, DataSizes(train=0, clean=8, test=0), image_size=32)
    assert is_streamed(data.test) and is_streamed(data.validation) and len(data.validation)
    model, context, target = create_clip(seed=3), DefenseContext(data.clean, data.task, 0), 2
    model.model.eval()
    flags_all = FlagsAll(build(FlagsAll.Params, {}, "f"))
    nothing = detect_inputs(flags_all, model, context, data.validation, data.test, data.task,
                            target, white_corner, 1)  # fmt: skip
    plain = evaluate(model, data.test, data.task, target, white_corner, seed=1)
    assert (nothing.after.ca, nothing.after.asr, nothing.after.ra, nothing.after.n_triggered) == (
        plain.ca, plain.asr, plain.ra, plain.n_triggered)  # fmt: skip
    corner = CornerCheck(build(CornerCheck.Params, {}, "c"))

    def held(pairs: PairSet) -> PairSet:
        return PairSet(pairs.images[:], list(pairs.captions), pairs.labels)

    from_disk = detect_inputs(corner, model, context, data.validation, data.test, data.task,
                              target, white_corner, 1)  # fmt: skip
    in_memory = detect_inputs(corner, model, context, held(data.validation), held(data.test),
                              data.task, target, white_corner, 1)  # fmt: skip
    timing = {"seconds_per_image", "fit_s"}
    assert {k: v for k, v in from_disk.detection.items() if k not in timing} == {
        k: v for k, v in in_memory.detection.items() if k not in timing}  # fmt: skip
    assert from_disk.after == in_memory.after and from_disk.detection["auroc"] == 1.0


def test_every_builtin_input_detector_declares_the_input_stage():
    found = {name for name in builtin(defenses) if stage_of(defenses.get(name)) == "input"}
    assert found == set(INPUT_DETECTORS)


@pytest.mark.parametrize("name", INPUT_DETECTORS)
def test_an_images_score_is_finite_and_the_same_in_any_batch(name, tiny_data, clip):
    cls = defenses.get(name)
    detector = cls(build(cls.Params, dict(cls.test_params), name))
    context = context_of(tiny_data)
    detector.fit(clip, context)
    images = tiny_data.test.images[:12]
    whole = torch.as_tensor(detector.score(clip, images, context)).double()
    halves = torch.cat([torch.as_tensor(detector.score(clip, part, context)).double()
                        for part in (images[:5], images[5:])])  # fmt: skip
    assert whole.shape == (12,) and bool(torch.isfinite(whole).all())
    torch.testing.assert_close(whole, halves, rtol=1e-5, atol=1e-6)


SIZES = DataSizes(train=256, clean=128, test=60, validation=60)


@pytest.mark.slow
def test_a_run_records_the_detection_and_the_metrics_with_rejection(tmp_path):
    defenses.register("corner_check", CornerCheck, package="tests")
    try:
        config = RunConfig(attack="badnet", defense="corner_check", poison_rate=0.08,
                           attack_params={"patch_fraction": 0.125, "pattern": "white",
                                          "location": "bottom_right"},
                           sizes=SIZES, pretrain={"epochs": 2, "batch_size": 32},
                           device="cpu")  # fmt: skip
        result = run(config, out=tmp_path)
    finally:
        defenses.unregister("corner_check")
    written = read_result(next(tmp_path.glob("*.json")))
    detection, after = written["metrics"]["detection"], written["metrics"]["after"]
    assert detection["auroc"] == 1.0 and after["asr"] == 0.0
    assert after["ca"] <= written["metrics"]["before"]["ca"]
    assert written["metrics"]["before"]["ca"] - after["ca"] <= detection["clean_lost"] + 1e-9
    assert written["extra"]["stage"]["stage"] == "input"
    assert written["extra"]["input_detection"]["threshold"] == detection["threshold"]
    before = written["metrics"]["before"]
    assert result.der == pytest.approx((max(0.0, before["asr"] - after["asr"])
                                        - max(0.0, before["ca"] - after["ca"]) + 1) / 2)
    table = CliRunner().invoke(app, ["table", str(tmp_path), "--columns",
                                     "after_asr,detection_auroc,detection_seconds_per_image"],
                               env={"COLUMNS": "200"})  # fmt: skip
    assert table.exit_code == 0, table.output
    assert "detection AUROC" in table.output and "1.000" in table.output
