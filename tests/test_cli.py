"""The command line through typer's CliRunner: listing, bad input, tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.engine.plugins import attacks, defenses

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def one_line_error(result, code=2):
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("benchbd: error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_list_is_a_line_per_plugin_and_fits_a_screen():
    result = runner.invoke(app, ["list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) <= 60 and max(map(len, lines)) <= 80, result.output
    for registry, kind in ((attacks, "attack"), (defenses, None)):
        for name in registry.names():  # its own line: name, kind or stage, a summary
            stage = kind or getattr(defenses.get(name), "stage", "finetune")
            assert any(line.split()[:2] == [name, stage] for line in lines), (name, result.output)
    assert "patch_fraction" not in result.output  # parameters are one `list NAME` away
    only = invoke("list", "defenses").output
    assert "cleanclip" in only and "badnet" not in only


def test_list_name_shows_one_plugins_parameters_in_full():
    result = invoke("list", "badnet")
    assert result.exit_code == 0, result.output
    for text in ("badnet (attack, package benchbd)", "patch_fraction: float = 0.25 [0.01, 0.5]",
                 "patch side as a fraction of the image side"):  # fmt: skip
        assert text in result.output
    assert "blended" not in result.output
    both = invoke("list", "none").output  # an attack and a defense of one name: both
    assert "none (attack" in both and "none (defense, finetune stage" in both
    assert "screen stage" in invoke("list", "lof").output


def test_list_of_an_unknown_name_is_one_line_with_a_suggestion():
    line = one_line_error(invoke("list", "badnt"))
    assert "unknown plugin 'badnt'; did you mean 'badnet'" in line


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


def write_result(folder, attack, defense, seed, ca_before, asr_before, ca_after, asr_after,
                 name=None, **fields):  # fmt: skip
    metrics = {
        "before": {"ca": ca_before, "asr": asr_before, "ra": 0.0},
        "after": {"ca": ca_after, "asr": asr_after, "ra": 0.0},
    }
    der = (max(0, asr_before - asr_after) - max(0, ca_before - ca_after) + 1) / 2
    data = {"attack": {"name": attack}, "defense": {"name": defense}, "seed": seed,
            "metrics": metrics, "der": der, "schema_version": 1, **fields}  # fmt: skip
    (folder / (name or f"{attack}-{defense}-{seed}.json")).write_text(json.dumps(data))


def test_table_formats_and_corrupt_files(tmp_path):
    write_result(tmp_path, "badnet", "finetune", 0, 0.9, 0.95, 0.88, 0.5)
    write_result(tmp_path, "badnet", "finetune", 1, 0.8, 0.85, 0.78, 0.3)
    write_result(tmp_path, "badnet", "none", 0, 0.9, 0.95, 0.9, 0.95)
    (tmp_path / "broken.json").write_text("{not json")
    markdown = invoke("table", str(tmp_path), "--format", "markdown")
    assert markdown.exit_code == 0
    assert "warning: skipped" in markdown.output and "broken.json" in markdown.output
    # the best defense of the attack (lowest ASR after, `none` excluded) is in bold, each
    # mean with its 95 % t interval over the seeds
    best = ("| **badnet** | **finetune** | **2** | **1** | **0.850 [0.215, 1.485]** | "
            "**0.900 [0.265, 1.535]** |")  # fmt: skip
    assert best in markdown.output
    assert "| badnet | none | 1 | baseline | 0.900 | 0.950 |" in markdown.output
    # rows within an attack are ordered by ASR after the defense, lowest first
    assert markdown.output.index("**finetune**") < markdown.output.index("| none |")
    csv = invoke("table", str(tmp_path), "--format", "csv").output
    assert "badnet,finetune,2,1,1,1,1,0.020000,0.850000,0.070711,0.214690,1.485310,2," in csv
    latex = invoke("table", str(tmp_path), "--format", "latex").output
    assert r"\begin{tabular}" in latex and "0.850 [0.215, 1.485]" in latex
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


def stderr_lines(result):
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_table_and_plot_skip_a_file_of_another_shape(tmp_path):
    write_result(tmp_path, "badnet", "finetune", 0, 0.9, 0.95, 0.88, 0.5)
    write_result(tmp_path, "badnet", "cleanclip", 0, 0.9, 0.95, 0.88, 0.1)
    stray = {"attack": 5, "defense": [], "metrics": "x", "seed": "a", "schema_version": 1}
    (tmp_path / "stray.json").write_text(json.dumps(stray))
    (tmp_path / "list.json").write_text("[1, 2]")
    table = invoke("table", str(tmp_path), "--format", "csv")
    assert table.exit_code == 0, table.output
    assert "badnet,cleanclip,1,1," in table.stdout and "badnet,finetune,1,0," in table.stdout
    warnings = stderr_lines(table)
    assert len(warnings) == 2
    for name, line in zip(("list.json", "stray.json"), warnings, strict=True):
        assert line.startswith(f"benchbd: warning: skipped {tmp_path / name}: ")
    plotted = invoke("plot", str(tmp_path), "--out", str(tmp_path / "board.png"))
    assert plotted.exit_code == 0, plotted.output
    assert len(stderr_lines(plotted)) == 2


def test_table_of_folders_without_results_is_one_line(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.json").write_text("[]")
    (bad / "b.json").write_text("{not json")
    assert "none of the 2 JSON files" in one_line_error(invoke("table", str(bad)))
    assert "none of the 2 JSON files" in one_line_error(invoke("plot", str(bad)))
    parent = tmp_path / "parent"
    (parent / "runs").mkdir(parents=True)
    write_result(parent / "runs", "badnet", "finetune", 0, 0.9, 0.95, 0.88, 0.5)
    line = one_line_error(invoke("table", str(parent)))
    assert "no result files" in line and str(parent / "runs") in line
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no result files" in one_line_error(invoke("table", str(empty)))
    (tmp_path / "file.json").write_text("{}")
    assert "not a folder" in one_line_error(invoke("table", str(tmp_path / "file.json")))


def readable_anyway(path):
    """Whether this process reads a file whatever its permissions (root, as in containers)."""
    try:
        path.read_bytes()
    except PermissionError:
        return False
    return True


def test_table_of_unreadable_folder_or_file(tmp_path):
    write_result(tmp_path, "badnet", "finetune", 0, 0.9, 0.95, 0.88, 0.5)
    write_result(tmp_path, "badnet", "none", 0, 0.9, 0.95, 0.9, 0.95)
    locked = tmp_path / "badnet-none-0.json"
    locked.chmod(0)
    try:
        if readable_anyway(locked):
            pytest.skip("this user reads files whatever their permissions")
        table = invoke("table", str(tmp_path), "--format", "csv")
        assert table.exit_code == 0 and "badnet,finetune" in table.stdout
        assert stderr_lines(table)[0].startswith(f"benchbd: warning: skipped {locked}: ")
        tmp_path.chmod(0)
        assert "cannot read" in one_line_error(invoke("table", str(tmp_path)))
    finally:
        tmp_path.chmod(0o755)
        locked.chmod(0o644)


def test_table_with_nan_in_every_seed(tmp_path):
    write_result(tmp_path, "badnet", "cleanclip", 0, 0.9, 0.95, float("nan"), float("nan"))
    write_result(tmp_path, "badnet", "cleanclip", 1, 0.9, 0.95, float("nan"), float("nan"))
    write_result(tmp_path, "badnet", "finetune", 0, 0.9, 0.95, 0.88, 0.5)
    table = invoke("table", str(tmp_path), "--format", "markdown")
    assert table.exit_code == 0, table.output
    assert "| **badnet** | **finetune** |" in table.stdout
    line = ("| badnet | cleanclip | 2 | unranked: no finite CA drop | 0.900 [0.900, 0.900] | "
            "0.950 [0.950, 0.950] | nan | nan |")  # fmt: skip
    assert line in table.stdout
    [warning] = stderr_lines(table)
    assert warning.startswith("benchbd: warning: non-finite") and "badnet-cleanclip-0" in warning
    plotted = invoke("plot", str(tmp_path), "--out", str(tmp_path / "board.png"))
    assert plotted.exit_code == 0, plotted.output


def test_table_splits_results_of_different_poison_rates(tmp_path):
    for seed, rate in ((0, 0.03), (1, 0.03), (0, 0.01)):
        poison = {"rate": rate, "count": round(rate * 20000)}
        write_result(tmp_path, "badnet", "finetune", seed, 0.9, 0.95, 0.88, 0.5,
                     name=f"{rate}-{seed}.json", poison=poison)  # fmt: skip
    table = invoke("table", str(tmp_path), "--format", "csv")
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0].startswith("poison_rate,attack,defense,seeds,")
    assert "0.01,badnet,finetune,1," in table.stdout and "0.03,badnet,finetune,2," in table.stdout
    [warning] = stderr_lines(table)
    assert warning.startswith("benchbd: warning: ") and "poison_rate" in warning


ABLATION = Path(__file__).resolve().parent.parent / "results" / "ablations" / "inmodal_weight"
WEIGHT = "defense.params.inmodal_weight"


def test_ablation_folder_splits_by_the_weight_with_or_without_group_by():
    grouped = invoke("table", str(ABLATION), "--format", "markdown", "--group-by", WEIGHT)
    assert grouped.exit_code == 0 and not grouped.stderr, grouped.output
    lines = grouped.stdout.split("\n\n")[0].splitlines()  # the table, then its caption
    assert lines[0].startswith(f"| {WEIGHT} | attack | defense | seeds | rank |")
    rows = [line.replace("**", "") for line in lines[2:]]  # one row per weight, competing
    assert sum(line.startswith("| **") for line in lines) == 1
    seeds = len({json.loads(p.read_text())["seed"] for p in ABLATION.glob("*.json")})
    assert len(rows) == 6 and all(f"| blended | cleanclip | {seeds} |" in row for row in rows)
    automatic = invoke("table", str(ABLATION), "--format", "markdown")
    assert automatic.exit_code == 0 and automatic.stdout == grouped.stdout
    [warning] = stderr_lines(automatic)
    assert WEIGHT in warning and "--group-by" in warning


def test_sort_by_a_column_not_shown_is_one_line(tmp_path):
    write_result(tmp_path, "badnet", "finetune", 0, 0.9, 0.95, 0.88, 0.5)
    (tmp_path / "broken.json").write_text("{not json")
    for wrong in ("ra", "after_ra"):
        line = one_line_error(invoke("table", str(tmp_path), "--sort", wrong))
        assert f"cannot sort by {wrong!r}; choose from before_ca, before_asr" in line
    assert invoke("table", str(tmp_path), "--sort", "der").exit_code == 0


def test_table_does_not_import_torch():
    code = (
        "import sys\n"
        "from benchbd.cli import main\n"
        f"sys.argv = ['benchbd', 'table', {str(ABLATION)!r}, '--format', 'csv']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'table imported torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_param_named_by_plugin_goes_to_that_plugin():
    from benchbd.cli.run_cmd import route_params

    assert route_params("blended", "cleanclip", ["blended:alpha=0.2", "cleanclip:epochs=2"]) == (
        {"alpha": "0.2"}, {"epochs": "2"})  # fmt: skip
    assert route_params("label_consistent", "none", ["label_consistent:harden=false"]) == (
        {"harden": "false"}, {})  # fmt: skip
    # the older forms still work
    assert route_params("blended", "cleanclip", ["attack.alpha=0.2", "defense.epochs=2"]) == (
        {"alpha": "0.2"}, {"epochs": "2"})  # fmt: skip
    assert route_params("blended", "cleanclip", ["alpha=0.2", "epochs=2"]) == (
        {"alpha": "0.2"}, {"epochs": "2"})  # fmt: skip


def test_param_named_by_a_plugin_not_in_the_run_is_one_line(tmp_path):
    out = tmp_path / "results"
    args = ["--attack", "blended", "--defense", "cleanclip", "--param", "badnet:size=1"]
    line = one_line_error(invoke("run", *args, "--out", str(out)))
    assert "'badnet'" in line and "'blended'" in line and "'cleanclip'" in line
    assert not out.exists()


@pytest.mark.slow
def test_show_takes_a_param_named_by_the_attack(tmp_path):
    png = tmp_path / "t.png"
    shown = invoke("show", "--attack", "blended", "--param", "blended:alpha=0.2",
                   "--images", "2", "--out", str(png))  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    line = one_line_error(invoke("show", "--attack", "blended", "--param", "badnet:alpha=0.2",
                                 "--out", str(png)))  # fmt: skip
    assert "'badnet'" in line and "'blended'" in line


def test_list_shows_bounds_and_choices():
    result = invoke("list", "blended")
    assert result.exit_code == 0, result.output
    assert "alpha: float = 0.2 [0, 1]" in result.output
    assert "{fresh_noise, fixed_noise, image}" in result.output


def test_table_filters_and_groups_by_attack(tmp_path):
    write_result(tmp_path, "badnet", "finetune", 0, 0.9, 0.95, 0.88, 0.5)
    write_result(tmp_path, "blended", "finetune", 0, 0.9, 0.95, 0.88, 0.3)
    filtered = invoke("table", str(tmp_path), "--format", "csv", "--filter", "attack=blended")
    assert filtered.exit_code == 0, filtered.output
    assert "blended,finetune" in filtered.stdout and "badnet" not in filtered.stdout
    assert "badnet" in invoke("table", str(tmp_path), "--filter", "defense=finetune").stdout
    grouped = invoke("table", str(tmp_path), "--format", "csv", "--group-by", "attack")
    assert grouped.exit_code == 0, grouped.output
    assert "blended,blended,finetune," in grouped.stdout  # the name, not the recorded object


def test_plugin_version_is_recorded_and_does_not_split_rows(tmp_path):
    from importlib.metadata import version

    from benchbd.engine.plugin_records import plugin_record_of

    record = plugin_record_of("badnet", "benchbd", {})
    assert record.version == version("benchbd")
    assert plugin_record_of("x", "no-such-package-here", {}).version is None
    # the baseline flag comes from the plugin class, not from its name
    assert record.baseline is False and plugin_record_of("x", "benchbd", {}).baseline is None
    assert plugin_record_of("none", "benchbd", {}, role="defense").baseline is True
    # an older file without the field and a newer one with it are two seeds of one row
    write_result(tmp_path, "badnet", "finetune", 0, 0.9, 0.95, 0.88, 0.5, name="old.json")
    newer = json.loads((tmp_path / "old.json").read_text())
    newer["seed"], newer["attack"]["version"], newer["defense"]["version"] = 1, "0.2.0", "0.2.0"
    (tmp_path / "new.json").write_text(json.dumps(newer))
    table = invoke("table", str(tmp_path), "--format", "csv")
    assert table.exit_code == 0, table.output
    assert "badnet,finetune,2," in table.stdout and not table.stderr.strip()
