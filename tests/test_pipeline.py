"""End to end on a tiny budget: the backdoor is learned, cached, measured and recorded."""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version

import pytest
import torch
from conftest import TINY
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.core.cache import cache_dir
from benchbd.core.errors import BenchbdError
from benchbd.core.results import read_result
from benchbd.core.seeds import substream
from benchbd.engine.evaluate import evaluate, triggered_examples
from benchbd.engine.model import create_clip
from benchbd.engine.pipeline import run
from benchbd.engine.planning import build_attack
from benchbd.engine.plugins import Defense, attacks, defenses
from benchbd.engine.poisoned_model import load_poisoned
from benchbd.engine.run_config import RunConfig
from benchbd.engine.train import TrainConfig, train
from benchbd.engine.visibility import trigger_visibility

# Every test here trains the poisoned model (12 epochs) or reuses it: the whole file is slow.
pytestmark = pytest.mark.slow

PRETRAIN = TrainConfig(epochs=12, batch_size=64, lr=3e-3)
ATTACK = {"patch_fraction": 0.25}


def tiny_config(**changes) -> RunConfig:
    base = dict(
        attack="badnet",
        defense="none",
        attack_params=ATTACK,
        poison_rate=0.08,
        sizes=TINY,
        pretrain=PRETRAIN,
        defense_params={},
        device="cpu",
    )
    base.update(changes)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def poisoned_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    return run(tiny_config(), out=out), out


def test_backdoor_is_learned_far_above_an_unpoisoned_model(poisoned_run, tiny_data):
    result, _ = poisoned_run
    before = result.metrics["before"]
    assert result.poison["count"] == round(0.08 * TINY.train)
    assert before["n_triggered"] == int((tiny_data.test.labels != 7).sum())
    # the same recipe without poisons, measured with the same trigger
    clean = create_clip(seed=0)
    train(clean, tiny_data.train, PRETRAIN, seed=0)
    attack = build_attack(tiny_config(), tiny_data)
    baseline = evaluate(clean, tiny_data.test, tiny_data.task, 7, attack.apply_trigger, seed=0)
    assert before["asr"] >= baseline.asr + 0.4, (before, baseline)
    assert before["ca"] > 0.15  # above chance (0.1) on 200 images even on this tiny budget


def test_result_file_is_complete_and_atomic(poisoned_run):
    result, out = poisoned_run
    files = list(out.iterdir())
    assert [f.name for f in files] == [result.filename]
    data = read_result(files[0])
    for key in ("attack", "defense", "dataset", "model", "seed", "metrics", "timings",
                "versions", "fingerprint", "poison", "pretrain"):  # fmt: skip
        assert key in data
    assert data["attack"]["params"]["patch_fraction"] == 0.25
    assert data["attack"]["version"] == data["defense"]["version"] == version("benchbd")
    # what each plugin declares, so that tables read from files need no plugin's name
    assert data["attack"]["baseline"] is False and data["defense"]["baseline"] is True
    assert len(data["poison"]["indices"]) == data["poison"]["count"]
    for when in ("before", "after"):
        for metric in ("ca", "asr", "ra"):
            assert 0.0 <= data["metrics"][when][metric] <= 1.0
    assert data["metrics"]["before"] == data["metrics"]["after"]  # defense "none"
    # The CPU kernels of the defense and of pretraining are recorded (portable by default).
    kernels = data["runtime"]["kernels"]
    assert kernels["mode"] == "portable" and kernels["level"] == data["runtime"]["pretrain_kernels"]
    assert kernels["cpu"] and kernels["libraries"]["torch"]


def test_trigger_visibility_is_recorded_on_the_images_asr_is_measured_on(poisoned_run, tiny_data):
    result, out = poisoned_run
    seen = read_result(next(out.iterdir()))["extra"]["trigger_visibility"]
    assert seen == result.extra["trigger_visibility"]
    assert seen["n_images"] == min(500, result.metrics["before"]["n_triggered"])
    # a 0.25-wide white-noise patch: every image has pixels far off, most pixels untouched
    assert 8 < seen["psnr_db"] < 40 and 0.2 < seen["ssim"] < 0.99 and seen["linf"] > 0.5
    attack = build_attack(tiny_config(), tiny_data)
    clean, triggered = triggered_examples(tiny_data.test, attack.setup.target, attack.apply_trigger,
                                          substream(result.seed, "evaluate"), 500)  # fmt: skip
    assert seen == trigger_visibility(clean, triggered)


def test_an_attack_without_poisons_records_no_visibility():
    quick = TrainConfig(epochs=1, batch_size=64, lr=3e-3)
    result = run(tiny_config(attack="none", attack_params={}, pretrain=quick))
    assert "trigger_visibility" not in result.extra


def test_second_run_reuses_the_poisoned_model_and_reproduces_numbers(poisoned_run, tmp_path):
    first, _ = poisoned_run
    checkpoint = cache_dir() / "models" / f"{first.poisoned_model_fingerprint}.pt"
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    second = run(
        tiny_config(defense="finetune", defense_params={"epochs": 1.0, "batch_size": 64}),
        out=tmp_path,
    )
    assert second.pretrain_cached and not first.pretrain_cached
    assert second.metrics["before"] == first.metrics["before"]
    assert second.poisoned_model_fingerprint == first.poisoned_model_fingerprint
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == digest  # defense left it alone
    assert second.defense.params["epochs"] == 1.0 and second.der is not None
    assert second.poison["indices"] == first.poison["indices"]
    assert second.runtime["threads"] == torch.get_num_threads()
    assert second.runtime["pretrain_threads"] == first.runtime["threads"]


def test_cached_model_skips_the_attack_and_records_its_rows(poisoned_run, tmp_path, monkeypatch):
    first, _ = poisoned_run
    attack_cls = attacks.get("badnet")

    def must_not_poison(self, pairs):
        raise AssertionError("the attack ran although its poisoned model is cached")

    monkeypatch.setattr(attack_cls, "poison", must_not_poison)
    again = run(tiny_config(), out=tmp_path)
    assert again.poison["indices"] == first.poison["indices"]
    assert again.metrics == first.metrics


def test_cached_model_without_its_record_is_trained_again(poisoned_run, tmp_path):
    first, _ = poisoned_run
    checkpoint = cache_dir() / "models" / f"{first.poisoned_model_fingerprint}.pt"
    record = checkpoint.with_suffix(".json")
    record.write_text("{not json")
    again = run(tiny_config(), out=tmp_path)
    assert not again.pretrain_cached
    assert again.poison["indices"] == first.poison["indices"]
    assert json.loads(record.read_text())["poison_indices"] == first.poison["indices"]


def test_load_poisoned_gives_the_cached_model_that_run_measured(poisoned_run, tiny_data):
    first, _ = poisoned_run
    clip, attack = load_poisoned(tiny_config(), tiny_data)
    before = evaluate(clip, tiny_data.test, tiny_data.task, attack.setup.target,
                      attack.apply_trigger, substream(0, "evaluate"))  # fmt: skip
    assert before.to_dict() == first.metrics["before"]


class Interrupting(Defense):
    description = "raises KeyboardInterrupt, as Ctrl-C does"

    def apply(self, clip, context):
        raise KeyboardInterrupt


def test_ctrl_c_midway_exits_cleanly_and_keeps_existing_results(poisoned_run, tmp_path):
    _, out = poisoned_run
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    defenses.register("interrupting", Interrupting, package="tests")
    try:
        result = CliRunner().invoke(
            app,
            ["run", "--defense", "interrupting", "--train-pairs", str(TINY.train),
             "--clean-pairs", str(TINY.clean), "--test-images", str(TINY.test),
             "--epochs", "12", "--batch-size", "64", "--lr", "3e-3", "--poison-rate", "0.08",
             "--param", "patch_fraction=0.25", "--device", "cpu", "--out", str(out)],
        )  # fmt: skip
    finally:
        defenses.unregister("interrupting")
    assert result.exit_code == 130
    assert "interrupted; no result file was written" in result.output
    assert "Traceback" not in result.output
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


def test_cli_run_prints_summary_and_table_reads_it(poisoned_run, tmp_path):
    result = CliRunner().invoke(
        app,
        ["run", "--train-pairs", str(TINY.train), "--clean-pairs", str(TINY.clean),
         "--test-images", str(TINY.test), "--epochs", "12", "--batch-size", "64",
         "--lr", "3e-3", "--poison-rate", "0.08", "--param", "patch_fraction=0.25",
         "--defense", "none", "--device", "cpu", "--out", str(tmp_path)],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "reusing cached poisoned model" in result.output
    assert "CA" in result.output and "ASR" in result.output
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    table = CliRunner().invoke(app, ["table", str(tmp_path), "--format", "markdown"])
    before = data["metrics"]["before"]["ca"]
    assert f"| badnet | none | 1 | baseline | {before:.3f} |" in table.output
    assert "PSNR" not in table.output
    seen = data["extra"]["trigger_visibility"]
    table = CliRunner().invoke(app, ["table", str(tmp_path), "--format", "markdown",
                                     "--visibility"])  # fmt: skip
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].endswith("| DER | PSNR | SSIM | L-inf |")
    assert f"| {seen['psnr_db']:.3f} | {seen['ssim']:.3f} | {seen['linf']:.3f} |" in table.output


def test_a_rerun_on_other_threads_or_kernels_never_replaces_a_result(poisoned_run, tmp_path):
    result, out = poisoned_run
    kept = tmp_path / result.filename
    data = json.loads((out / result.filename).read_text())
    for change in ({"threads": 99}, {"kernels": {"level": "native-avx512"}}, {"kernels": None}):
        data["runtime"] = {**result.runtime, **change}
        kept.write_text(json.dumps(data))
        before = kept.read_bytes()
        with pytest.raises(BenchbdError, match="holds this experiment's result made with"):
            run(tiny_config(), out=tmp_path)
        assert kept.read_bytes() == before
    # The same threads and kernels: a rerun replaces it with the same numbers.
    kept.write_text((out / result.filename).read_text())
    again = run(tiny_config(), out=tmp_path)
    assert again.metrics == result.metrics
