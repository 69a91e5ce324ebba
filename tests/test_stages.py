"""Defenses at every stage through the real pipeline, on a tiny poisoned run: a screen is
measured against the rows the attack recorded and a fresh model is pretrained on what it kept;
a pretraining defense pretrains a fresh model through the one loop; "before" is always the
undefended poisoned model; the stage's model is cached under a fingerprint of its own while the
poisoned model's and every finetune-stage fingerprint stay as they were."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
from conftest import builtin

from benchbd.core.cache import fingerprint
from benchbd.core.errors import BenchbdError
from benchbd.core.results import read_result
from benchbd.core.seeds import substream
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.detection import ROC_POINTS
from benchbd.engine.evaluate import evaluate
from benchbd.engine.grid import Grid
from benchbd.engine.model import create_clip
from benchbd.engine.pipeline import run
from benchbd.engine.planning import load_experiment_data, plan, stage_fingerprint
from benchbd.engine.plugins import (
    DefenseContext,
    Screening,
    ScreeningDefense,
    TrainingPairs,
    defenses,
    stage_of,
)
from benchbd.engine.run_config import RunConfig
from benchbd.engine.stages import detect
from benchbd.engine.sweep import SweepObserver, sweep

SIZES = DataSizes(train=256, clean=128, test=60, validation=0)
PRETRAIN = {"epochs": 2, "batch_size": 32}
# A white square in the bottom-right corner, an 8 px side at 32 px: a known-trigger scan can
# find every poisoned image and no clean one.
ATTACK = {"patch_fraction": 0.25, "pattern": "white", "location": "bottom_right"}
SIDE = 8


def config(defense: str = "none", **changes) -> RunConfig:
    base = dict(attack="badnet", defense=defense, attack_params=ATTACK, poison_rate=0.08,
                sizes=SIZES, pretrain=PRETRAIN, device="cpu")  # fmt: skip
    defense_params = {**defenses.get(defense).test_params, **changes.pop("defense_params", {})}
    return RunConfig(**{**base, "defense_params": defense_params, **changes})


class CornerScan(ScreeningDefense):
    """A known-trigger scan: the share of pure-white pixels in each training image's
    bottom-right square; the rows where all of them are white are dropped."""

    description = "Screen: drop the images whose bottom-right square is pure white."

    def screen(self, training: TrainingPairs, context: DefenseContext) -> Screening:
        corner = training.pairs.images[:, :, -SIDE:, -SIDE:]
        scores = (corner == 255).flatten(1).float().mean(dim=1)
        return Screening(scores, torch.nonzero(scores == 1.0).flatten().tolist())


class DropsAll(ScreeningDefense):
    """A screen that finds every pair suspicious (SafeCLIP's mixture can, on a small set)."""

    description = "Screen: drop every training pair."

    def screen(self, training: TrainingPairs, context: DefenseContext) -> Screening:
        scores = torch.arange(len(training.pairs), dtype=torch.float32)
        return Screening(scores, list(range(len(training.pairs))))


@pytest.fixture(scope="module")
def undefended(tmp_path_factory):
    """The no-defense run: trains and caches the poisoned model every other run reuses."""
    return run(config(), out=tmp_path_factory.mktemp("none"))


@pytest.fixture
def corner_scan():
    defenses.register("corner_scan", CornerScan, package="tests")
    yield
    defenses.unregister("corner_scan")


def test_every_defense_declares_a_known_stage():
    stages = {name: stage_of(defenses.get(name)) for name in builtin(defenses)}
    assert {stages[n] for n in ("kdistance", "lof", "dao", "iforest", "cosine_gmm")} == {"screen"}
    assert stages["roclip"] == stages["safeclip"] == "pretrain"
    assert {stages[n] for n in ("none", "finetune", "cleanclip", "inmodal",
                                "cleanclip_supervised")} == {"finetune"}  # fmt: skip


def test_stage_models_have_their_own_fingerprints_and_the_poisoned_model_keeps_its_own():
    finetune = plan(config("finetune"))
    data = load_experiment_data(config())
    for name in ("kdistance", "roclip"):
        screen = config(name)
        poisoned_fp, run_fp = plan(screen)
        assert poisoned_fp == finetune[0]  # one poisoned model, trained once for every stage
        assert run_fp != finetune[1]
        own = stage_fingerprint(poisoned_fp, screen, data)
        assert own is not None and own != poisoned_fp
        other = config(name, defense_params={"every": 3} if name == "roclip" else {"k": 5})
        assert stage_fingerprint(poisoned_fp, other, data) not in (own, poisoned_fp)
    assert stage_fingerprint(finetune[0], config("finetune"), data) is None
    # the key: the poisoned model's, the stage, the defense and its parameters, the data
    key = {"version": 3, "poisoned": finetune[0], "stage": "screen", "defense": "kdistance",
           "defense_params": config("kdistance").defense_settings().to_dict(),
           "data": data.fingerprint}  # fmt: skip
    assert stage_fingerprint(finetune[0], config("kdistance"), data) == fingerprint(key)


def test_a_stage_defense_needs_the_poisoned_pairs_trained_on(tmp_path):
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"only its name is read here")
    with pytest.raises(BenchbdError, match="acts at the screen stage"):
        config("kdistance", pretrained=str(weights))


@pytest.mark.slow
def test_a_screen_that_ranks_every_poisoned_row_first_scores_auroc_1(
    undefended, corner_scan, tmp_path
):
    result = run(config("corner_scan"), out=tmp_path)
    written = read_result(next(tmp_path.glob("*.json")))
    detection = written["metrics"]["detection"]
    assert detection["auroc"] == 1.0 and detection["ap"] == 1.0
    assert detection["tpr_at_1fpr"] == 1.0 and detection["poisons_removed"] == 1.0
    assert detection["clean_lost"] == 0.0 and detection["scored"] == SIZES.train
    # measured against the rows the attack recorded: exactly those were dropped
    assert written["extra"]["screen"]["dropped"] == written["poison"]["indices"]
    assert written["extra"]["screen"]["kept"] == SIZES.train - len(written["poison"]["indices"])
    assert set(written["extra"]["screen"]["roc"]["tpr"]) == {1.0}
    # "before" is the undefended poisoned model; "after" a model pretrained without the poisons
    assert result.metrics["before"] == undefended.metrics["before"]
    assert result.poisoned_model_fingerprint == undefended.poisoned_model_fingerprint
    stage = written["extra"]["stage"]
    assert stage["stage"] == "screen" and stage["cached"] is False
    assert stage["model_fingerprint"] not in (None, result.poisoned_model_fingerprint)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kdistance", "roclip", "safeclip"])
def test_builtin_screens_and_pretraining_defenses_run_through_the_pipeline(
    name, undefended, tmp_path
):
    result = run(config(name), out=tmp_path)
    data = load_experiment_data(config(name))
    stage = result.extra["stage"]
    assert stage["stage"] == stage_of(defenses.get(name))
    own = stage_fingerprint(result.poisoned_model_fingerprint, config(name), data)
    assert stage["model_fingerprint"] == own
    assert result.metrics["before"] == undefended.metrics["before"]
    assert result.metrics["after"]["n_test"] == SIZES.test
    assert ("detection" in result.metrics) == (stage["stage"] == "screen")
    if name == "safeclip":  # one in-modal warmup epoch, then one split epoch
        assert len(result.extra["defense_report"]["safe_fractions"]) == 1
    if name == "roclip":  # matched in the 2nd epoch (K = 2) of 8 steps
        report = result.extra["defense_report"]
        assert report["matched_steps"] == 8 and report["matching_epochs"] == [2]
        assert len(report["matched_own_class"]) == 1 and len(report["clean_ca"]) == 2
        assert 0.0 <= report["matched_own_class"][0] <= 1.0
    # a rerun reuses the stage's cached model and gets the same numbers
    again = run(config(name), out=tmp_path / "again")
    assert again.extra["stage"]["cached"] is True
    if name == "roclip":  # a loaded model has no training to report
        assert again.extra["defense_report"]["trained"] is False
    assert again.metrics["after"] == result.metrics["after"]
    assert again.metrics.get("detection") == result.metrics.get("detection")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [n for n in builtin(defenses) if stage_of(defenses.get(n)) == "screen"]
)
def test_every_builtin_screen_scores_every_pair_and_drops_its_share(name, undefended):
    """Through `stages.detect`, which checks one finite score per pair and rows in range, with
    the real poisoned model and (for a screen that asks) the real clean model."""
    screen_config = config(name)
    metrics, curve = detect(screen_config)
    assert metrics["scored"] == SIZES.train
    assert 0.0 <= metrics["auroc"] <= 1.0 and 0.0 <= metrics["ap"] <= 1.0
    assert len(curve["tpr"]) == ROC_POINTS
    drop = getattr(screen_config.defense_settings(), "drop", None)
    if drop is not None:
        assert metrics["dropped"] == round(drop * SIZES.train)


class Outcomes(SweepObserver):
    def __init__(self) -> None:
        self.finished: dict[str, dict] = {}

    def cell_finished(self, outcome) -> None:
        self.finished[outcome.name] = outcome.metrics


@pytest.mark.slow
def test_a_sweep_runs_a_screen_beside_the_defenses_sharing_its_poisoned_model(undefended, tmp_path):
    grid = Grid(["badnet"], ["none", "kdistance"], [0], attack_params={"badnet": ATTACK},
                defense_params={"kdistance": {"k": 4}},
                run={"poison_rate": 0.08, "device": "cpu"}, sizes=asdict(SIZES),
                pretrain=PRETRAIN)  # fmt: skip
    observer = Outcomes()
    summary = sweep(grid, tmp_path, observer=observer)
    assert summary.done == 2 and not summary.failed
    written = {r["defense"]["name"]: r for r in map(read_result, tmp_path.glob("*.json"))}
    assert (written["kdistance"]["poisoned_model_fingerprint"]
            == written["none"]["poisoned_model_fingerprint"]
            == undefended.poisoned_model_fingerprint)  # fmt: skip
    auroc = written["kdistance"]["metrics"]["detection"]["auroc"]
    assert observer.finished["badnet__kdistance__seed0"]["auroc"] == auroc
    assert "auroc" not in observer.finished["badnet__none__seed0"]


@pytest.mark.slow
def test_a_screen_that_keeps_less_than_a_batch_leaves_an_untrained_model(undefended, tmp_path):
    """Dropping every pair is an outcome of the defense, not a failure of the run: the
    defender is left with a model trained on nothing, which is measured as it is (chance
    accuracy), with the screen's detection numbers, so a grid has the cell and its cost."""
    defenses.register("drops_all", DropsAll, package="tests")
    try:
        result = run(config("drops_all"), out=tmp_path)
    finally:
        defenses.unregister("drops_all")
    written = read_result(next(tmp_path.glob("*.json")))
    screen = written["extra"]["screen"]
    assert screen["kept"] == 0 and screen["trained"] is False
    assert written["metrics"]["detection"]["poisons_removed"] == 1.0
    assert written["metrics"]["detection"]["clean_lost"] == 1.0
    # "after" is the model as initialised, before any training
    cfg = config()
    data = load_experiment_data(cfg)
    untrained = create_clip(cfg.model, seed=substream(cfg.seed, "init"), device="cpu")
    untrained.model.eval()
    clean = evaluate(untrained, data.test, data.task, 0, None, substream(cfg.seed, "evaluate"))
    assert result.metrics["after"]["ca"] == pytest.approx(clean.ca)
    assert result.metrics["after"]["ca"] != result.metrics["before"]["ca"]
    assert written["extra"]["stage"]["model_fingerprint"] is None
