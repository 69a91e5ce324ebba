"""Zoo claims: a model detector's AUROC and target accuracy over a zoo's test models, decided
with a score interval over the models (Newcombe's, Wilson's), and only on enough models of
each kind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.reporting.claims import decide_all, read_claims
from benchbd.reporting.zoo_claims import DECIDING_MODELS, auroc, auroc_interval

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "results" / "zoo"

CLAIM = """
[[claim]]
id = "decree-detects"
claim = "DECREE tells poisoned models from clean ones"
folder = "{folder}"
detector = "decree"
metric = "{metric}"
comparison = ">="
threshold = {threshold}
"""


def write_zoo(folder: Path, poisoned_scores, clean_scores, named_right: int) -> Path:
    """A detection file of test models: poisoned ones (target 0), the first `named_right` of
    them named correctly; and clean ones; plus a validation model the claim must not read."""
    models = [{"clean": False, "part": "test", "score": s, "target_index": 0, "seed": 2 * i + 1,
               "named_target_index": 0 if i < named_right else 3}
              for i, s in enumerate(poisoned_scores)]  # fmt: skip
    models += [{"clean": True, "part": "test", "score": s, "target_index": None, "seed": 2 * i + 1,
                "named_target_index": None} for i, s in enumerate(clean_scores)]  # fmt: skip
    models.append({"clean": True, "part": "validation", "score": 99.0, "seed": 0})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "detect-decree.json"
    path.write_text(json.dumps({"kind": "benchbd-zoo-detection", "models": models}))
    return path


def decide(tmp_path: Path, folder: Path, metric: str = "auroc", threshold: float = 0.9):
    path = tmp_path / "claims.toml"
    path.write_text(CLAIM.format(folder=folder, metric=metric, threshold=threshold))
    (decision,) = decide_all(read_claims(path))
    return decision


def test_the_auroc_is_the_zoos_own_on_the_committed_zoo_ties_included():
    """The AUROC a claim reads is the one `benchbd zoo` recorded (whole zoo: auroc_all), and a
    tie counts half: positives {1, 1} against negatives {1, 0} order 3 of 4 pairs."""
    data = json.loads((ZOO / "detect-decree.json").read_text())
    scores = np.array([r["score"] for r in data["models"]])
    poisoned = np.array([not r["clean"] for r in data["models"]])
    assert auroc(scores, poisoned) == pytest.approx(data["metrics"]["auroc_all"])
    tied = np.array([1.0, 1.0, 0.0, 1.0])
    truth = np.array([True, False, False, True])
    assert auroc(tied, truth) == pytest.approx(0.75)


def test_the_committed_16_model_zoo_is_too_small_to_decide(tmp_path):
    """4 poisoned and 4 clean test models: DECREE orders all 16 pairs, its interval reaches
    down to 0.64, and the verdict is inconclusive on both counts."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    shutil.copy(ZOO / "detect-decree.json", folder)
    decision = decide(tmp_path, folder)
    assert decision.found.mean == 1.0 and decision.models == (4, 4)
    assert decision.found.low == pytest.approx(0.643, abs=1e-3) and decision.found.high == 1.0
    assert decision.verdict == "inconclusive" and decision.by_interval == "inconclusive"
    needed = f"{DECIDING_MODELS} of each needed"
    assert decision.note() == f"4 poisoned and 4 clean test models, {needed}"
    assert decision.n_text() == "8 models"


def newcombe_excess(value: float, a: float, m: int, n: int) -> float:
    """(value - A)^2 - z^2 V(A), Newcombe's (2006) method 5, written out again: V is Hanley and
    McNeil's variance of an AUROC A with both group sizes N* = (m + n) / 2 - 1."""
    n_star = (m + n) / 2 - 1
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    variance = (a * (1 - a) + (n_star - 1) * (q1 - a * a) + (n_star - 1) * (q2 - a * a)) / (m * n)
    return (value - a) ** 2 - 1.959963984540054**2 * variance


@pytest.mark.parametrize("value, m, n", [(1.0, 8, 8), (0.948, 12, 8), (0.74, 12, 8),
                                         (0.5, 8, 8), (0.9, 24, 12)])  # fmt: skip
def test_the_auroc_interval_is_newcombes_score_interval(value, m, n):
    """Its ends solve Newcombe's equation, with Hanley and McNeil's variance written in their
    own form (the module uses the factored form), and everything between them satisfies it."""
    low, high = auroc_interval(value, m, n)
    assert 0 <= low <= value <= high <= 1
    for end in (low, high):
        if 0 < end < 1:
            assert newcombe_excess(value, end, m, n) == pytest.approx(0, abs=1e-9)
    inside = np.linspace(low, high, 50)[1:-1]
    assert all(newcombe_excess(value, a, m, n) <= 1e-12 for a in inside)
    outside = [a for a in (low - 0.01, high + 0.01) if 0 <= a <= 1]
    assert all(newcombe_excess(value, a, m, n) > 0 for a in outside)


def test_a_perfect_small_zoo_keeps_a_wide_interval_and_more_models_narrow_it():
    """8 + 8 perfectly separated: about [0.78, 1] (a true AUROC of 0.9 separates such a sample
    perfectly about one time in nine); 24 + 12: about [0.88, 1]."""
    assert auroc_interval(1.0, 8, 8)[0] == pytest.approx(0.780, abs=1e-3)
    assert auroc_interval(1.0, 24, 12)[0] == pytest.approx(0.880, abs=1e-3)


def test_a_zoo_of_enough_models_is_decided_by_its_interval(tmp_path):
    rng = np.random.default_rng(0)
    separated = tmp_path / "separated"
    write_zoo(separated, rng.normal(5, 1, 24), rng.normal(0, 1, 12), named_right=24)
    holds = decide(tmp_path, separated, threshold=0.85)
    assert holds.found.mean == 1.0 and holds.verdict == "holds" and holds.note() == ""
    assert holds.found.n == 36  # the validation model is not read
    weak = tmp_path / "weak"
    write_zoo(weak, rng.normal(0.3, 1, 12), rng.normal(0, 1, 8), named_right=3)
    fails = decide(tmp_path, weak)
    assert fails.found.high < 0.9 and fails.verdict == "fails"
    accuracy = decide(tmp_path, separated, "target_accuracy", 0.9)
    # 24 of 24 named: Wilson's lower end is 24 / (24 + z^2)
    assert accuracy.found.mean == 1.0
    assert accuracy.found.low == pytest.approx(24 / (24 + 1.959963984540054**2))
    assert accuracy.verdict == "inconclusive"  # 0.862 < 0.9 <= 1


def test_a_zoo_without_a_detection_file_reads_no_results(tmp_path):
    (tmp_path / "empty").mkdir()
    assert decide(tmp_path, tmp_path / "empty").verdict == "no results"


def test_a_detector_name_that_is_not_a_plugin_name_is_refused(tmp_path):
    """The name becomes part of a file name (detect-NAME.json): a path is refused."""
    (tmp_path / "zoo").mkdir()
    path = tmp_path / "claims.toml"
    text = CLAIM.format(folder=tmp_path / "zoo", metric="auroc", threshold=0.9)
    path.write_text(text.replace('detector = "decree"', 'detector = "../../secret"'))
    out = CliRunner().invoke(app, ["claims", str(path)])
    assert out.exit_code != 0 and "field 'detector'" in out.output
    assert "Traceback" not in out.output


@pytest.mark.parametrize(
    "extra, field",
    [('attack = "badnet"', "attack"), ('min_seeds = 10', "min_seeds")],
)
def test_a_zoo_claim_takes_no_result_filters(tmp_path, extra, field):
    (tmp_path / "zoo").mkdir()
    path = tmp_path / "claims.toml"
    path.write_text(CLAIM.format(folder=tmp_path / "zoo", metric="auroc", threshold=0.9) + extra)
    out = CliRunner().invoke(app, ["claims", str(path)])
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert f"field '{field}'" in out.output and "zoo claim" in out.output


def test_a_bad_metric_and_a_damaged_file_are_one_line_errors(tmp_path):
    folder = tmp_path / "zoo"
    path = write_zoo(folder, [1.0], [0.0], 1)
    claims = tmp_path / "claims.toml"
    claims.write_text(CLAIM.format(folder=folder, metric="after.asr", threshold=0.9))
    out = CliRunner().invoke(app, ["claims", str(claims)])
    assert out.exit_code != 0 and "auroc, target_accuracy" in out.output
    path.write_text('{"kind": "benchbd-zoo-detection", "mod')
    claims.write_text(CLAIM.format(folder=folder, metric="auroc", threshold=0.9))
    out = CliRunner().invoke(app, ["claims", str(claims)])
    assert out.exit_code != 0 and "not a zoo detection file" in out.output
    assert "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1
