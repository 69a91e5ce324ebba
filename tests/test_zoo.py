"""`benchbd zoo`: a zoo's models are the cells' poisoned models (same fingerprints, same cache),
its manifest says what each is, and model detectors are measured over it (AUROC, F1 at the
validation threshold, target accuracy, seconds per model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.core.errors import BenchbdError
from benchbd.engine.model_detection import (
    DetectionContext,
    ModelDetector,
    ModelVerdict,
    check_target,
    model_detectors,
)
from benchbd.engine.planning import plan
from benchbd.engine.run_config import RunConfig
from benchbd.engine.zoo import ZooSpec, part_of, plan_zoo, read_manifest, spec_of, write_manifest
from benchbd.engine.zoo_detection import best_threshold, f1, zoo_metrics

SIZES = {"train": 256, "clean": 64, "test": 40, "validation": 40}
RECIPE = {"epochs": 1.0, "batch_size": 64}
SPEC = ZooSpec(attacks=("badnet", "blended"), targets=("heart",), poison_rates=(0.1,),
               seeds=(0, 1), clean_seeds=(0, 1), dataset="synthetic", sizes=SIZES,
               pretrain=RECIPE, device="cpu")  # fmt: skip
ZOO_ARGS = ["--attacks", "badnet", "--targets", "heart", "--poison-rates", "0.1",
            "--seeds", "0,1", "--clean-seeds", "0-1", "--dataset", "synthetic",
            "--train-pairs", "256", "--clean-pairs", "64", "--test-images", "40",
            "--validation-images", "40", "--epochs", "1", "--batch-size", "64",
            "--threads", "1", "--device", "cpu"]  # fmt: skip
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_a_zoo_model_is_the_model_a_run_of_its_cell_trains():
    models = plan_zoo(SPEC)
    assert len(models) == 6 and sum(m.clean for m in models) == 2
    for model in models:
        cell = RunConfig(attack=model.attack, defense="finetune", target="heart",
                         poison_rate=0.1, seed=model.seed, dataset="synthetic", sizes=SIZES,
                         pretrain=RECIPE, device="cpu")  # fmt: skip
        assert plan(cell, weights=False)[0] == model.fingerprint
        assert model.part == ("validation" if model.seed % 2 == 0 else "test")
    poisoned = [m for m in models if not m.clean]
    assert {(m.attack, m.target, m.poison_count) for m in poisoned} == {
        ("badnet", "heart", 26), ("blended", "heart", 26)}
    assert all(m.target is None and m.poison_count == 0 for m in models if m.clean)


def test_the_manifest_is_written_whole_and_gives_back_the_same_zoo(tmp_path):
    models = plan_zoo(SPEC)
    path = write_manifest(tmp_path, SPEC, models)
    data = read_manifest(path)
    assert data["counts"] == {"models": 6, "clean": 2, "poisoned": 4}
    assert "seed % 2" in data["split_rule"]
    first = data["models"][0]
    assert set(first) == {"fingerprint", "attack", "target", "target_index", "poison_rate",
                          "poison_count", "seed", "clean", "part"}  # fmt: skip
    assert [m.fingerprint for m in plan_zoo(spec_of(data))] == [m.fingerprint for m in models]
    assert not [p for p in tmp_path.iterdir() if p.name != "manifest.json"]  # no temporaries
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(BenchbdError, match="not a benchbd zoo manifest"):
        read_manifest(tmp_path / "other.json")


def test_a_zoo_refuses_what_is_not_one():
    with pytest.raises(BenchbdError, match="clean models"):
        ZooSpec(attacks=("none",))
    with pytest.raises(BenchbdError, match="at least one clean seed"):
        ZooSpec(clean_seeds=())
    assert [part_of(s) for s in range(4)] == ["validation", "test", "validation", "test"]


def rows(scores, clean, parts, named=None, targets=None):
    named = named or [None] * len(scores)
    targets = targets or [None if c else 0 for c in clean]
    columns = zip(scores, clean, parts, named, targets, strict=True)
    return [{"score": s, "clean": c, "part": p, "named_target_index": n, "target_index": t,
             "seconds": 2.0} for s, c, p, n, t in columns]  # fmt: skip


def test_the_threshold_is_fixed_on_the_validation_part_and_f1_measured_on_the_test_part():
    # validation: the poisoned at 0.8 and 0.9, clean at 0.1 and 0.85 -> F1 best at 0.8
    # (flags 0.8, 0.85, 0.9: F1 0.8) or 0.9 (F1 0.667); test scored at that threshold
    data = rows([0.8, 0.9, 0.1, 0.85, 0.95, 0.7, 0.2, 0.81],
                [False, False, True, True, False, False, True, True],
                ["validation"] * 4 + ["test"] * 4,
                named=[0, 0, 3, 1, 0, 2, 1, 1])  # fmt: skip
    metrics = zoo_metrics(data)
    assert metrics["threshold"] == 0.8
    assert metrics["validation_f1"] == pytest.approx(0.8)
    # test: flagged 0.95 (poisoned), 0.81 (clean); 0.7 (poisoned) missed -> F1 = 2/4
    assert metrics["f1"] == pytest.approx(0.5)
    assert metrics["tpr"] == 0.5 and metrics["fpr"] == 0.5
    assert metrics["auroc"] == pytest.approx(0.75)  # 0.95 > both clean, 0.7 > 0.2 only
    assert metrics["target_accuracy"] == 0.5  # among test poisoned: named 0 and 2, true 0
    assert metrics["target_accuracy_all"] == 0.75
    assert metrics["seconds_per_model"] == 2.0
    assert metrics["models"] == {"validation": 4, "test": 4}


def test_ties_keep_the_highest_threshold_and_one_kind_gives_none():
    truth = np.array([True, False, True, False])
    assert best_threshold(np.array([0.9, 0.5, 0.9, 0.1]), truth) == 0.9
    assert best_threshold(np.array([0.9, 0.5]), np.array([True, True])) is None
    assert f1(np.array([False, False]), np.array([True, False])) == 0.0
    metrics = zoo_metrics(rows([0.5, 0.4], [True, True], ["validation", "test"]))
    assert metrics["auroc"] is None and metrics["threshold"] is None and metrics["f1"] is None
    assert metrics["target_accuracy"] is None  # no detector-named target, no poisoned model


def test_a_verdict_is_checked():
    with pytest.raises(BenchbdError, match="finite"):
        ModelVerdict(float("nan"))
    verdict = ModelVerdict(np.float32(0.5), np.int64(2), {"a": 1})
    assert isinstance(verdict.score, float) and verdict.target == 2
    with pytest.raises(BenchbdError, match="named target 2"):
        check_target(verdict, 2, "x")


class ScaleNorm(ModelDetector):
    """A detector registered in-process: the image embeddings' mean norm on the clean set."""

    description = "test: mean image-embedding norm"

    def detect(self, clip, context: DetectionContext) -> ModelVerdict:
        with torch.no_grad():
            images = clip.normalize(context.clean.images[:16])
            norm = clip.model.encode_image(images).norm(dim=-1).mean()
        return ModelVerdict(float(norm), None, {"images": 16})


def test_builtin_detectors_are_found_through_their_entry_points():
    assert {"decree", "mmbd"} <= set(model_detectors.names())
    assert model_detectors.origin("decree") == "benchbd"


@pytest.mark.slow
def test_benchbd_zoo_builds_lists_and_scores_a_tiny_zoo(tmp_path):
    out = tmp_path / "zoo"
    dry = invoke("zoo", *ZOO_ARGS, "--dry-run", "--out", str(out))
    assert dry.exit_code == 0, dry.output
    assert "4 models (2 clean), 0 cached, 4 to train" in dry.output and not out.exists()

    model_detectors.register("scale_norm", ScaleNorm)
    try:
        built = invoke("zoo", *ZOO_ARGS, "--out", str(out), "--detect", "decree,mmbd,scale_norm",
                       "-p", "decree:max_epochs=2", "-p", "decree:images=32",
                       "-p", "mmbd:steps=2", "-p", "mmbd:images=2")  # fmt: skip
    finally:
        model_detectors.unregister("scale_norm")
    assert built.exit_code == 0, built.output
    manifest = read_manifest(out / "manifest.json")
    assert manifest["counts"] == {"models": 4, "clean": 2, "poisoned": 2}
    for name in ("decree", "mmbd", "scale_norm"):
        scores = json.loads((out / f"detect-{name}.json").read_text())
        assert scores["detector"]["name"] == name
        assert [r["fingerprint"] for r in scores["models"]] == \
            [m["fingerprint"] for m in manifest["models"]]  # fmt: skip
        metrics = scores["metrics"]
        assert metrics["models"] == {"validation": 2, "test": 2}
        assert 0.0 <= metrics["auroc_all"] <= 1.0 and metrics["seconds_per_model"] > 0
        assert metrics["threshold"] is not None and metrics["f1"] is not None
    decree = json.loads((out / "detect-decree.json").read_text())
    assert decree["detector"]["params"]["max_epochs"] == 2
    assert all(r["details"]["steps"] > 0 for r in decree["models"])
    assert json.loads((out / "detect-scale_norm.json").read_text())["metrics"][
        "target_accuracy"] is None  # fmt: skip

    again = invoke("zoo", *ZOO_ARGS, "--dry-run", "--out", str(out))
    assert "4 cached, 0 to train" in again.output, again.output
    # a run of a zoo cell reuses the zoo's model
    poisoned = next(m for m in manifest["models"] if not m["clean"] and m["seed"] == 1)
    run = invoke("run", "--attack", "badnet", "--defense", "none", "--target", "heart",
                 "--poison-rate", "0.1", "--seed", "1", "--dataset", "synthetic",
                 "--train-pairs", "256", "--clean-pairs", "64", "--test-images", "40",
                 "--validation-images", "40", "--epochs", "1", "--batch-size", "64",
                 "--threads", "1", "--device", "cpu", "--out", str(tmp_path / "runs"))  # fmt: skip
    assert run.exit_code == 0, run.output
    (result,) = (tmp_path / "runs").glob("badnet__none__seed1__*.json")
    result = json.loads(result.read_text())
    assert result["poisoned_model_fingerprint"] == poisoned["fingerprint"]
    assert result["pretrain_cached"] is True


def test_unknown_detectors_and_parameters_are_refused_before_any_training(tmp_path):
    result = invoke("zoo", *ZOO_ARGS, "--detect", "decre", "--out", str(tmp_path / "z"))
    assert result.exit_code != 0 and "decree" in result.output  # did you mean
    result = invoke("zoo", *ZOO_ARGS, "--detect", "decree", "-p", "decree:nope=1",
                    "--out", str(tmp_path / "z"))  # fmt: skip
    assert result.exit_code != 0 and "nope" in result.output
    assert not (tmp_path / "z").exists()


def test_an_out_that_is_a_file_and_an_empty_seed_range_are_refused_before_any_training(
    tmp_path,
):
    taken = tmp_path / "a-file"
    taken.write_text("mine")
    result = invoke("zoo", *ZOO_ARGS, "--out", str(taken))
    assert result.exit_code != 0 and "is a file" in result.output and "Errno" not in result.output
    assert taken.read_text() == "mine" and len(result.output.strip().splitlines()) == 1
    result = invoke("zoo", "--clean-seeds", "3-1", "--dry-run")
    assert result.exit_code != 0 and "'3-1' is an empty range" in result.output


def test_a_manifest_gives_the_zoo_to_a_dry_run(tmp_path, monkeypatch):
    # a cache of its own: the session's may hold this zoo's models from another test
    monkeypatch.setenv("BENCHBD_CACHE", str(tmp_path / "cache"))
    write_manifest(tmp_path, SPEC, plan_zoo(SPEC))
    result = invoke("zoo", "--manifest", str(tmp_path / "manifest.json"), "--dry-run",
                    "--out", str(tmp_path / "unused"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "6 models (2 clean), 0 cached, 6 to train" in result.output
    for model in plan_zoo(SPEC):
        assert model.fingerprint in result.output
    assert not (tmp_path / "unused").exists()
