"""The command line through typer's CliRunner: listing, bad input, tables."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from benchbd.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def one_line_error(result, code=2):
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("benchbd: error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_list_shows_plugins_packages_and_parameters():
    result = invoke("list")
    assert result.exit_code == 0, result.output
    for text in ("badnet", "finetune", "none", "benchbd", "patch_fraction", "float = 0.25"):
        assert text in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--attack", "badnett"], "unknown attack 'badnett'; did you mean 'badnet'"),
        (["--defense", "clean"], "unknown defense 'clean'"),
        (["--param", "patch_fraction=big"], "must be float, got 'big'"),
        (["--param", "patch_fraction=0.9"], "must be <= 0.5"),
        (["--param", "nope=1"], "has a parameter 'nope'"),
        (["--model", "RN5O"], "unknown model 'RN5O'; did you mean"),
        (["--dataset", "synthetc"], "unknown dataset 'synthetc'; did you mean 'synthetic'"),
        (["--target", "banana"], "unknown target class 'banana'"),
        (["--poison-rate", "1.5"], "poison rate must be in [0, 1]"),
        (["--poison-count", "5000", "--train-pairs", "1024"], "only"),
        (["--epochs", "0"], "epochs and lr must be positive"),
        (["--device", "bogus"], "unknown device 'bogus'"),
    ],
)
def test_bad_run_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "results"
    base = ["run", "--train-pairs", "1024", "--clean-pairs", "256", "--test-images", "200"]
    line = one_line_error(invoke(*base, *args, "--out", str(out)))
    assert message in line
    assert not out.exists() or not list(out.iterdir())


def test_table_on_missing_or_empty_folder(tmp_path):
    assert "does not exist" in one_line_error(invoke("table", str(tmp_path / "nothing")))
    assert "no result files" in one_line_error(invoke("table", str(tmp_path)))


def write_result(folder, attack, defense, seed, ca_before, asr_before, ca_after, asr_after):
    metrics = {
        "before": {"ca": ca_before, "asr": asr_before, "ra": 0.0},
        "after": {"ca": ca_after, "asr": asr_after, "ra": 0.0},
    }
    der = (max(0, asr_before - asr_after) - max(0, ca_before - ca_after) + 1) / 2
    data = {"attack": {"name": attack}, "defense": {"name": defense}, "seed": seed,
            "metrics": metrics, "der": der, "schema_version": 1}  # fmt: skip
    (folder / f"{attack}-{defense}-{seed}.json").write_text(json.dumps(data))


def test_table_formats_and_corrupt_files(tmp_path):
    write_result(tmp_path, "badnet", "finetune", 0, 0.9, 0.95, 0.88, 0.5)
    write_result(tmp_path, "badnet", "finetune", 1, 0.8, 0.85, 0.78, 0.3)
    write_result(tmp_path, "badnet", "none", 0, 0.9, 0.95, 0.9, 0.95)
    (tmp_path / "broken.json").write_text("{not json")
    markdown = invoke("table", str(tmp_path), "--format", "markdown")
    assert markdown.exit_code == 0
    assert "warning: skipped" in markdown.output and "broken.json" in markdown.output
    # the best defense of the attack (lowest ASR after, `none` excluded) is in bold
    best = "| **badnet** | **finetune** | **2** | **0.850 ± 0.071** | **0.900 ± 0.071** |"
    assert best in markdown.output
    assert "| badnet | none | 1 | 0.900 | 0.950 |" in markdown.output
    # rows within an attack are ordered by ASR after the defense, lowest first
    assert markdown.output.index("**finetune**") < markdown.output.index("| none |")
    csv = invoke("table", str(tmp_path), "--format", "csv").output
    assert "badnet,finetune,2,1,0.850000,0.070711" in csv
    latex = invoke("table", str(tmp_path), "--format", "latex").output
    assert r"\begin{tabular}" in latex and r"$\pm$" in latex
    rich = invoke("table", str(tmp_path))
    assert rich.exit_code == 0 and "finetune" in rich.output
    assert "unknown format" in one_line_error(invoke("table", str(tmp_path), "--format", "xml"))
    filtered = invoke("table", str(tmp_path), "--format", "csv", "--filter", "defense.name=none")
    assert filtered.exit_code == 0 and "finetune" not in filtered.output
    none_match = invoke("table", str(tmp_path), "--filter", "seed=9")
    assert none_match.exit_code == 2
    assert none_match.output.splitlines()[-1].endswith("matches the filters")
    png = tmp_path / "plots" / "board.png"
    plotted = invoke("plot", str(tmp_path), "--out", str(png))
    assert plotted.exit_code == 0 and png.read_bytes()[:4] == b"\x89PNG"
