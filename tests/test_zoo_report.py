"""A zoo folder (`benchbd zoo --detect`) read by `benchbd table`, `plot` and `report`: the
committed digits zoo's detection files, copied, and damaged copies of them."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.reporting.zoo_claims import zoo_interval
from benchbd.reporting.zoo_frame import is_zoo_folder, read_zoo, zoo_frame

ZOO = Path(__file__).resolve().parents[1] / "results" / "zoo"
PNG = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


@pytest.fixture
def zoo(tmp_path: Path) -> Path:
    folder = tmp_path / "results" / "zoo"
    shutil.copytree(ZOO, folder)
    return folder


def detection(folder: Path, name: str) -> dict:
    return json.loads((folder / f"detect-{name}.json").read_text())


def test_a_zoo_folder_is_known_by_its_files(zoo):
    assert is_zoo_folder(zoo)
    assert not is_zoo_folder(zoo.parent)  # no manifest, no detection file
    (zoo / "detect-decree.json").unlink()
    (zoo / "detect-mmbd.json").unlink()
    assert is_zoo_folder(zoo)  # the manifest alone says so


def test_frame_holds_the_files_metrics_and_the_score_interval(zoo):
    frame = zoo_frame(read_zoo(zoo))
    assert list(frame["detector"]) == ["decree", "mmbd"]  # best test AUROC first
    for _, row in frame.iterrows():
        data = detection(zoo, row["detector"])
        metrics = data["metrics"]
        for key in ("auroc", "auroc_all", "threshold", "f1", "tpr", "fpr", "target_accuracy",
                    "target_accuracy_all", "seconds_per_model"):  # fmt: skip
            assert row[key] == metrics[key], key
        test = [m for m in data["models"] if m["part"] == "test"]
        interval, poisoned, clean = zoo_interval(test, "auroc")
        assert (row["auroc_low"], row["auroc_high"]) == (interval.low, interval.high)
        assert interval.mean == pytest.approx(metrics["auroc"])
        assert (row["test_poisoned"], row["test_clean"]) == (poisoned, clean) == (4, 4)
    # MM-BD misorders a blended model: its interval is wide, below its AUROC of 0.8125
    mmbd = frame.iloc[1]
    assert mmbd["auroc_low"] < mmbd["auroc"] <= mmbd["auroc_high"]


def test_table_formats_show_the_same_numbers(zoo):
    decree, mmbd = detection(zoo, "decree")["metrics"], detection(zoo, "mmbd")["metrics"]
    made = runner.invoke(app, ["table", str(zoo), "--format", "json"])
    assert made.exit_code == 0, made.output
    records = json.loads(made.stdout)
    assert [r["detector"] for r in records] == ["decree", "mmbd"]
    for record, metrics in zip(records, (decree, mmbd), strict=True):
        assert (record["auroc"], record["f1"]) == (metrics["auroc"], metrics["f1"])
        assert record["target_accuracy"] == metrics["target_accuracy"]

    made = runner.invoke(app, ["table", str(zoo), "--format", "csv"])
    assert made.exit_code == 0, made.output
    rows = list(csv.DictReader(io.StringIO(made.stdout)))
    assert [float(r["auroc"]) for r in rows] == [decree["auroc"], mmbd["auroc"]]
    assert [float(r["f1"]) for r in rows] == [decree["f1"], mmbd["f1"]]

    made = runner.invoke(app, ["table", str(zoo), "--format", "markdown"])
    assert made.exit_code == 0, made.output
    lines = made.stdout.splitlines()
    assert lines[0].startswith("| detector | test models (poisoned / clean) | AUROC (test part)")
    low, high = (zoo_frame(read_zoo(zoo)).loc[1, key] for key in ("auroc_low", "auroc_high"))
    assert lines[2].startswith("| **decree** | **4 / 4** | **1.000 [0.643, 1.000]** | **0.984")
    assert lines[3].startswith(f"| mmbd | 4 / 4 | 0.812 [{low:.3f}, {high:.3f}] | 0.844")
    assert "0.800 (threshold 0.490) | 1.00 / 0.50 | 1.00 / 0.75 | 17.1 |" in lines[3]

    made = runner.invoke(app, ["table", str(zoo)])  # rich
    assert made.exit_code == 0, made.output
    assert "decree" in made.stdout and "mmbd" in made.stdout


def test_run_options_and_unknown_formats_are_refused_on_a_zoo(zoo):
    for args in (["--sort", "after_asr"], ["--per-seed"], ["--format", "yaml"]):
        made = runner.invoke(app, ["table", str(zoo), *args])
        assert made.exit_code != 0
        assert made.stderr.startswith("benchbd: error: ") and made.stderr.count("\n") == 1


def test_plot_writes_a_png_of_the_zoo(zoo, tmp_path):
    out = tmp_path / "zoo.png"
    made = runner.invoke(app, ["plot", str(zoo), "--out", str(out)])
    assert made.exit_code == 0, made.output
    assert out.read_bytes().startswith(PNG)


def test_site_has_a_page_for_the_zoo_and_the_index_links_it(zoo, tmp_path):
    out = tmp_path / "site"
    made = runner.invoke(app, ["report", str(zoo.parent), "--all", "--no-triggers",
                               "--out", str(out)])  # fmt: skip
    assert made.exit_code == 0, made.output
    page = (out / "zoo" / "index.html").read_text()
    assert "<h1>benchbd zoo: results/zoo</h1>" in page
    assert "1.000 [0.643, 1.000]" in page and "0.812 [" in page
    assert (out / "zoo" / "zoo.png").read_bytes().startswith(PNG)
    assert 'href="zoo/index.html"' in (out / "index.html").read_text()
    alone = tmp_path / "alone"
    made = runner.invoke(app, ["report", str(zoo), "--no-triggers", "--out", str(alone)])
    assert made.exit_code == 0, made.output
    assert "<h1>benchbd zoo: zoo</h1>" in (alone / "index.html").read_text()


def test_a_zoo_not_yet_scored_says_how_to_score_it_and_is_left_out_of_the_site(zoo, tmp_path):
    for path in zoo.glob("detect-*.json"):
        path.unlink()
    made = runner.invoke(app, ["table", str(zoo)])
    assert made.exit_code != 0
    assert made.stderr.startswith("benchbd: error: zoo folder") and "--detect" in made.stderr
    grid = zoo.parent / "digits"
    grid.mkdir()
    for path in sorted((ZOO.parent / "digits").glob("badnet__none__seed*.json")):
        shutil.copy(path, grid)
    made = runner.invoke(app, ["report", str(zoo.parent), "--all", "--no-triggers",
                               "--out", str(tmp_path / "site")])  # fmt: skip
    assert made.exit_code == 0, made.output
    assert not (tmp_path / "site" / "zoo").exists() and (tmp_path / "site" / "digits").exists()


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda data: "{ not json", "not JSON"),
        (lambda data: {**data, "kind": "benchbd-result"}, "its kind is 'benchbd-result'"),
        (lambda data: {**data, "models": []}, "it records no models"),
        (lambda data: {**data, "metrics": {**data["metrics"], "auroc": "high"}},
         "metrics.auroc is 'high'"),
        (lambda data: {**data, "models": [{**data["models"][0], "score": None}]},
         "models[0].score is None"),
    ],
)  # fmt: skip
def test_a_damaged_detection_file_is_one_line_that_says_what_to_do(zoo, tmp_path, damage, words):
    path = zoo / "detect-mmbd.json"
    damaged = damage(json.loads(path.read_text()))
    path.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
    for args in (["table", str(zoo)], ["plot", str(zoo), "--out", str(tmp_path / "p.png")],
                 ["report", str(zoo.parent), "--all", "--no-triggers", "--out",
                  str(tmp_path / "site")]):  # fmt: skip
        made = runner.invoke(app, args)
        assert made.exit_code != 0
        lines = made.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("benchbd: error: "), made.stderr
        assert words in lines[0] and "benchbd zoo --detect mmbd" in lines[0]
        assert "Traceback" not in made.output
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "site").exists()


def test_a_folder_with_neither_results_nor_a_zoo_keeps_its_error(tmp_path):
    (tmp_path / "empty").mkdir()
    made = runner.invoke(app, ["table", str(tmp_path / "empty")])
    assert made.exit_code != 0
    assert made.stderr.startswith("benchbd: error: no result files in")


COMMITTED_ZOOS = sorted(p.parent for p in ZOO.parent.glob("*/manifest.json"))


@pytest.mark.parametrize("folder", COMMITTED_ZOOS, ids=lambda p: p.name)
def test_every_committed_zoos_readme_holds_the_table_the_command_makes(folder):
    """Between its markers, as benchmarks/regenerate_tables.py writes it."""
    made = runner.invoke(app, ["table", str(folder), "--format", "markdown"])
    assert made.exit_code == 0, made.output
    text = (folder / "README.md").read_text()
    start = "<!-- made by: benchbd table FOLDER --format markdown -->\n"
    end = "<!-- end of the table -->"
    assert text.split(start, 1)[1].split(end, 1)[0] == made.stdout
