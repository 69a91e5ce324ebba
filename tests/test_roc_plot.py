"""The screens' ROC picture: curves from the downsampled ROC each result file keeps, averaged
over seeds, one panel per attack, and `benchbd plot` writing it beside the leaderboard."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.engine.detection import detection_metrics
from benchbd.reporting.trade_off_plot import roc_curves, roc_figure


def result(attack: str, defense: str, seed: int, scores: list[float], rate: float = 0.03):
    """A result dict as a screening run writes it, from scores of 10 rows (rows 0-1 poisoned)."""
    detection, curve = detection_metrics(scores, [0, 1], dropped=[0])
    return {
        "attack": {"name": attack, "params": {}},
        "defense": {"name": defense, "params": {}},
        "seed": seed,
        "dataset": {"name": "synthetic"},
        "poison": {"rate": rate},
        "metrics": {
            "before": {"ca": 0.9, "asr": 0.9, "ra": 0.0},
            "after": {"ca": 0.9, "asr": 0.1, "ra": 0.0, "classifier": "zero-shot"},
            "detection": detection,
        },
        "der": 0.9,
        "schema_version": 1,
        "extra": {"screen": {"dropped": [0], "kept": 9, "roc": curve}},
    }


PERFECT = [9, 8, 0, 1, 2, 3, 4, 5, 6, 7]
HALF = [9, 0, 8, 1, 2, 3, 4, 5, 6, 7]  # one poison first, the other after every clean row


def test_curves_are_the_mean_over_seeds_per_attack_and_screen():
    results = [result("badnet", "kdistance", 0, PERFECT), result("badnet", "kdistance", 1, HALF),
               result("blended", "dao", 0, PERFECT)]  # fmt: skip
    curves = roc_curves(results)
    assert list(curves) == ["badnet", "blended"]
    ((label, fpr, tpr),) = curves["badnet"]
    assert label == "kdistance (AUROC 0.750)"  # (1.0 + 0.5) / 2
    assert len(fpr) == len(tpr) == 101 and tpr[0] == 0.75  # seed 0 catches both, seed 1 one
    assert tpr[-1] == 1.0
    assert [ax.get_title() for ax in roc_figure(results).axes] == ["badnet", "blended"]


def test_experiments_of_one_attack_and_screen_are_told_apart_by_their_settings():
    curves = roc_curves([result("badnet", "lof", 0, PERFECT, rate=0.03),
                         result("badnet", "lof", 0, HALF, rate=0.01)])  # fmt: skip
    labels = sorted(label for label, _, _ in curves["badnet"])
    assert labels == ["lof (AUROC 0.500)\npoison.rate=0.01", "lof (AUROC 1.000)\npoison.rate=0.03"]


def test_plot_writes_the_roc_picture_beside_the_leaderboard_when_there_are_screens(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    for i, data in enumerate([result("badnet", "kdistance", 0, PERFECT)]):
        (folder / f"r{i}.json").write_text(json.dumps(data))
    out = tmp_path / "board.png"
    made = CliRunner().invoke(app, ["plot", str(folder), "--out", str(out)])
    assert made.exit_code == 0, made.output
    roc = tmp_path / "board-roc.png"
    assert f"roc: {roc}" in made.output
    assert roc.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.exists()
    # a folder without screens gets the leaderboard alone
    data = result("badnet", "finetune", 0, PERFECT)
    del data["extra"]["screen"], data["metrics"]["detection"]
    (folder / "r0.json").write_text(json.dumps(data))
    again = CliRunner().invoke(app, ["plot", str(folder), "--out", str(tmp_path / "b2.png")])
    assert again.exit_code == 0 and "roc:" not in again.output
    assert not (tmp_path / "b2-roc.png").exists()
