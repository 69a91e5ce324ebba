"""Image-text retrieval on the evaluation split's captions (`--eval retrieval`): recall@K both
ways against direct computations, the retrieval ASR on exactly the images the zero-shot ASR
triggers, and how the opt-in evaluations are asked for and recorded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import write_folder, write_pairs
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.core.errors import BenchbdError
from benchbd.core.params import build
from benchbd.core.results import read_result
from benchbd.engine import retrieval
from benchbd.engine.data.pairs import PairSet
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data
from benchbd.engine.evaluate import EVALUATIONS, evaluations_in, triggered_examples
from benchbd.engine.grid import Grid, load_grid
from benchbd.engine.model import create_clip
from benchbd.engine.pipeline import run
from benchbd.engine.planning import plan
from benchbd.engine.probe import encode_images
from benchbd.engine.retrieval import (
    distinct_captions,
    image_to_text_recall,
    retrieval_attack_success,
    retrieval_metrics,
    text_to_image_recall,
    triggered_features,
)
from benchbd.engine.run_config import RunConfig
from benchbd.engine.sweep import sweep

SMALL = DataSizes(train=200, clean=64, test=60, validation=30)
FAST = {"epochs": 1, "batch_size": 64}
BOTH = EVALUATIONS["probe"] + EVALUATIONS["retrieval"]


def unit(rows: list[list[float]]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def rank_of_truth(scores: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """1 + how many candidates score strictly above each query's true one: a direct count."""
    own = scores.gather(1, truth[:, None])
    return 1 + (scores > own).sum(dim=1)


@pytest.fixture(scope="module")
def clip():
    return create_clip(seed=0)


@pytest.fixture(scope="module")
def test_split(tiny_data) -> PairSet:
    return tiny_data.test.subset(list(range(60)))


def test_image_to_text_recall_counts_images_whose_own_caption_ranks_within_k():
    texts = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    # image 0 is nearest its own caption; image 1 nearest caption 2, its own second; image 2
    # has its own caption last of three
    images = unit([[1, 0.1, 0], [0, 0.5, 1], [1, 0.5, 0]])
    text_of = torch.tensor([0, 1, 2])
    assert image_to_text_recall(images, texts, text_of, 1) == pytest.approx(1 / 3)
    assert image_to_text_recall(images, texts, text_of, 2) == pytest.approx(2 / 3)
    assert image_to_text_recall(images, texts, text_of, 5) == 1.0  # k beyond every caption


@pytest.mark.parametrize("distinct", [1, 2, 40])
def test_image_to_text_recall_is_the_rank_of_the_own_caption(distinct, monkeypatch):
    """Against a direct count of better-scoring captions, in chunks or not, down to one or
    two distinct captions (where scikit-learn's binary path would otherwise be taken)."""
    generator = torch.Generator().manual_seed(distinct)
    images = F.normalize(torch.randn(90, 16, generator=generator), dim=-1)
    texts = F.normalize(torch.randn(distinct, 16, generator=generator), dim=-1)
    text_of = torch.randint(0, distinct, (90,), generator=generator)
    ranks = rank_of_truth(images @ texts.T, text_of)
    for k in (1, 5):
        expected = (ranks <= k).double().mean().item()
        assert image_to_text_recall(images, texts, text_of, k) == pytest.approx(expected)
        monkeypatch.setattr(retrieval, "QUERIES_PER_CHUNK", 7)
        assert image_to_text_recall(images, texts, text_of, k) == pytest.approx(expected)
        monkeypatch.undo()


def test_text_to_image_recall_counts_any_image_of_a_shared_caption(monkeypatch):
    """Captions 'a', 'a', 'b': either image of 'a' ranked first is a hit for both 'a' pairs."""
    distinct, text_of = distinct_captions(["a", "a", "b"])
    assert distinct == ["a", "b"] and text_of.tolist() == [0, 0, 1]
    texts = unit([[1, 0], [0, 1]])
    images = unit([[0.2, 1], [1, 0.1], [1, 0]])  # 'a' is nearest image 2, which is 'b''s
    assert text_to_image_recall(images, texts, text_of, 1) == pytest.approx(0.0)
    assert text_to_image_recall(images, texts, text_of, 2) == pytest.approx(2 / 3)
    assert text_to_image_recall(images, texts, text_of, 5) == 1.0

    generator = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(50, 8, generator=generator), dim=-1)
    texts = F.normalize(torch.randn(12, 8, generator=generator), dim=-1)
    text_of = torch.randint(0, 12, (50,), generator=generator)
    scores = texts @ images.T  # direct: the best own image's rank, per pair's caption
    own = torch.where(text_of[None, :] == torch.arange(12)[:, None], scores, -torch.inf)
    best_own = own.max(dim=1).values
    ranks = 1 + (scores > best_own[:, None]).sum(dim=1)
    for k in (1, 5):
        expected = (ranks[text_of] <= k).double().mean().item()
        assert text_to_image_recall(images, texts, text_of, k) == pytest.approx(expected)
        monkeypatch.setattr(retrieval, "QUERIES_PER_CHUNK", 5)
        assert text_to_image_recall(images, texts, text_of, k) == pytest.approx(expected)
        monkeypatch.undo()


def test_retrieval_attack_success_is_the_share_retrieving_a_target_caption():
    texts = unit([[1, 0], [0, 1], [1, 1]])
    target_text = torch.tensor([False, True, True])
    triggered = unit([[1, 0.1], [0.1, 1], [1, 0.9], [1, 0]])
    assert retrieval_attack_success(triggered, texts, target_text) == 0.5


def test_metrics_of_a_model_are_the_declared_fields_and_leave_its_mode(clip, test_split):
    clip.model.train()
    measured = retrieval_metrics(clip, test_split, 0, None, seed=0)
    assert clip.model.training
    clip.model.eval()
    assert set(measured) == set(EVALUATIONS["retrieval"])
    assert measured["retrieval_asr"] is None  # nothing to trigger
    assert all(0 <= measured[k] <= 1 for k in EVALUATIONS["retrieval"][:4])
    assert measured["i2t_recall_at_5"] >= measured["i2t_recall_at_1"]
    assert measured["t2i_recall_at_5"] >= measured["t2i_recall_at_1"]


def test_a_trigger_that_makes_every_image_one_image_retrieves_its_caption(clip, test_split):
    """Every triggered image becomes image 0: each retrieves image 0's nearest caption, so the
    retrieval ASR is 1 when that caption's class is the target, and 0 otherwise."""
    distinct, text_of = distinct_captions(test_split.captions)
    texts = retrieval.caption_features(clip, distinct)
    nearest = int((encode_images(clip, test_split.images[:1]) @ texts.T).argmax())
    labels_of_nearest = set(test_split.labels[text_of == nearest].tolist())
    assert len(labels_of_nearest) == 1
    (hit,) = labels_of_nearest
    miss = next(k for k in range(10) if k != hit and (test_split.labels != k).any())

    def to_image_zero(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return test_split.images[0].expand_as(images).clone()

    assert retrieval_metrics(clip, test_split, hit, to_image_zero, 0)["retrieval_asr"] == 1.0
    assert retrieval_metrics(clip, test_split, miss, to_image_zero, 0)["retrieval_asr"] == 0.0


def test_the_triggered_images_are_those_the_zero_shot_asr_measures(clip, test_split):
    """A random trigger (fresh noise per image) drawn from the evaluation seed's generator:
    retrieval sees the same triggered images as `evaluate` (and `benchbd show`)."""

    def noise(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        shift = torch.randint(0, 60, images.shape, generator=generator, dtype=torch.int16)
        return (images.to(torch.int16) + shift).clamp(0, 255).to(torch.uint8)

    target, seed = 3, 11
    _, expected = triggered_examples(test_split, target, noise, seed, len(test_split))
    features = triggered_features(clip, test_split, target, noise, seed)
    assert torch.equal(features, encode_images(clip, expected))


@pytest.mark.slow
def test_a_split_read_from_disk_measures_what_the_same_images_in_memory_do(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHBD_WORKERS", "0")
    from benchbd.engine.plugins import AttackSetup, attacks

    dataset = f"csv:{write_pairs(tmp_path / 'cc')}|eval=imagefolder:{write_folder(tmp_path / 'v')}"
    data = load_data(dataset + "?classes=classes.json", DataSizes(train=0, clean=8, test=0), 32)
    in_memory = PairSet(data.test.images[:], list(data.test.captions), data.test.labels)
    cls = attacks.get("badnet")
    params = build(cls.Params, {"pattern": "checkerboard", "location": "top_left"}, "badnet")
    attack = cls(params, AttackSetup(2, data.task, 0, seed=0))
    model = create_clip(seed=3)
    streamed = retrieval_metrics(model, data.test, 2, attack.apply_trigger, 1)
    assert streamed == retrieval_metrics(model, in_memory, 2, attack.apply_trigger, 1)


def test_evaluations_are_named_checked_and_canonical():
    assert RunConfig(eval="retrieval, probe").eval == ("probe", "retrieval")
    assert RunConfig(eval=["retrieval", "retrieval"]).eval == ("retrieval",)
    assert RunConfig().eval == RunConfig(eval="").eval == ()
    with pytest.raises(BenchbdError, match="did you mean 'retrieval'"):
        RunConfig(eval="retreival")
    with pytest.raises(BenchbdError, match="list of evaluation names"):
        RunConfig(eval=3)
    assert evaluations_in({"before": {"ca": 1.0, "i2t_recall_at_1": 0.5}}) == ("retrieval",)
    assert evaluations_in({"before": {"ca": 1.0}}) == ()


def test_asking_for_evaluations_keeps_the_fingerprints():
    """Measurements of the same experiment: the committed results keep their names."""
    config = RunConfig(sizes=SMALL, pretrain={"epochs": 1})
    assert plan(RunConfig(sizes=SMALL, pretrain={"epochs": 1}, eval="probe,retrieval")) == plan(
        config
    )


def test_a_grid_asks_for_them_in_its_run_table(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('attacks = ["badnet"]\ndefenses = ["none"]\n[run]\neval = ["retrieval"]\n')
    assert [c.eval for c in load_grid(path).cells()] == [("retrieval",)]
    path.write_text('attacks = ["badnet"]\ndefenses = ["none"]\n[run]\neval = ["probes"]\n')
    with pytest.raises(BenchbdError, match="^grid file: .*'probes'.*did you mean 'probe'"):
        load_grid(path)


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_unknown_evaluation_is_one_error_line(command, tmp_path):
    result = CliRunner().invoke(app, [command, "--eval", "probe,knn", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "benchbd: error: unknown evaluation 'knn'; choose from probe, retrieval"
    ]


@pytest.mark.slow
def test_a_run_records_them_flat_beside_unchanged_zero_shot_numbers(tmp_path):
    """The same experiment with and without the opt-in evaluations: the same file name, the
    same zero-shot numbers and DER, and the opt-in fields as numbers before and after."""
    config = dict(attack="badnet", defense="finetune", sizes=SMALL, pretrain=FAST,
                  defense_params={"epochs": 1, "batch_size": 32}, device="cpu")  # fmt: skip
    plain = run(RunConfig(**config), out=tmp_path / "plain")
    asked = run(RunConfig(**config, eval="probe,retrieval"), out=tmp_path / "asked")
    assert asked.filename == plain.filename and asked.der == plain.der
    for when in ("before", "after"):
        zero_shot = plain.metrics[when]
        assert {k: asked.metrics[when][k] for k in zero_shot} == zero_shot
        assert set(asked.metrics[when]) - set(zero_shot) == set(BOTH)
        assert all(isinstance(asked.metrics[when][k], float) for k in BOTH)
    recorded = read_result(tmp_path / "asked" / asked.filename)
    rebuilt = RunConfig.from_result(recorded)
    assert rebuilt.eval == ("probe", "retrieval")
    assert plan(rebuilt) == (asked.poisoned_model_fingerprint, asked.fingerprint)
    assert RunConfig.from_result(plain.to_dict()).eval == ()


@pytest.mark.slow
def test_a_sweep_reruns_a_finished_cell_that_lacks_the_asked_metrics(tmp_path):
    """A file made without the opt-in metrics is not finished for a sweep that asks for them;
    once it has them, the cell is skipped. With no defense, after is before."""
    out = tmp_path / "results"
    grid = Grid(["badnet"], ["none"], [0], run={"device": "cpu"}, sizes=SMALL.__dict__,
                pretrain=FAST)  # fmt: skip
    assert sweep(grid, out).done == 1
    (path,) = out.glob("*.json")
    assert evaluations_in(read_result(path)["metrics"]) == ()
    asking = Grid(**{**grid.__dict__, "run": {"device": "cpu", "eval": "probe,retrieval"}})
    summary = sweep(asking, out)
    assert (summary.done, summary.skipped) == (1, 0)
    assert list(out.glob("*.json")) == [path]
    metrics = read_result(path)["metrics"]
    assert {k: metrics["before"][k] for k in BOTH} == {k: metrics["after"][k] for k in BOTH}
    assert sweep(asking, out).skipped == 1
    assert sweep(grid, out).skipped == 1  # asking for less than a file holds

    shown = CliRunner().invoke(app, [
        "run", "--defense", "none", "--eval", "retrieval", "--train-pairs", "200",
        "--clean-pairs", "64", "--test-images", "60", "--validation-images", "30",
        "--epochs", "1", "--batch-size", "64", "--device", "cpu", "--out", str(tmp_path / "cli"),
    ], env={"COLUMNS": "200"})  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "i2t_recall_at_1" in shown.stdout and "retrieval_asr" in shown.stdout
    assert "probe_ca" not in shown.stdout


def test_every_opt_in_metric_declares_its_direction():
    from benchbd.core.results import HIGHER_IS_BETTER
    from benchbd.engine.evaluate import EVALUATIONS

    fields = [name for names in EVALUATIONS.values() for name in names]
    assert all(name in HIGHER_IS_BETTER for name in fields)
    assert [n for n in fields if not HIGHER_IS_BETTER[n]] == ["probe_asr", "retrieval_asr"]
