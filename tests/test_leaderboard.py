"""Aggregation, filters, grouping, every output format, and the plot, on known inputs."""

from __future__ import annotations

import json
import shutil
import statistics

import pytest

from benchbd.core.errors import BenchbdError
from benchbd.core.results import read_result
from benchbd.reporting.leaderboard import (
    COLUMNS,
    SORT_CHOICES,
    apply_filters,
    group_text,
    leaderboard,
    load_folder,
    parse_filters,
    results_frame,
    tabulate,
)
from benchbd.reporting.leaderboard_tables import render
from benchbd.reporting.trade_off_plot import leaderboard_figure, write_plot


def result(attack, defense, seed, before, after, rate=0.03, epochs=5.0):
    """A result dict with the fields the leaderboard reads; before/after are (CA, ASR)."""
    der = (max(0, before[1] - after[1]) - max(0, before[0] - after[0]) + 1) / 2
    return {
        "attack": {"name": attack, "params": {}},
        "defense": {"name": defense, "params": {"epochs": epochs}},
        "seed": seed,
        "dataset": {"name": "synthetic"},
        "model": "benchbd-rn-tiny",
        "poison": {"rate": rate},
        "metrics": {
            "before": {"ca": before[0], "asr": before[1], "ra": 0.0},
            "after": {"ca": after[0], "asr": after[1], "ra": 0.0, "classifier": "zero-shot"},
        },
        "der": der,
        "schema_version": 1,
    }


@pytest.fixture
def results():
    return [
        result("badnet", "finetune", 0, (0.90, 0.95), (0.88, 0.60)),
        result("badnet", "finetune", 1, (0.80, 0.85), (0.78, 0.40)),
        result("badnet", "cleanclip", 0, (0.90, 0.95), (0.86, 0.10)),
        result("badnet", "cleanclip", 1, (0.80, 0.85), (0.76, 0.20)),
        result("badnet", "none", 0, (0.90, 0.95), (0.90, 0.95)),
        result("blended", "finetune", 0, (0.90, 0.99), (0.90, 0.30), rate=0.01),
        result("blended", "cleanclip", 0, (0.90, 0.99), (0.70, 0.50), rate=0.01),
    ]


def test_mean_and_std_over_seeds(results):
    rows = leaderboard(results)
    clean = next(r for r in rows if (r.attack, r.defense) == ("badnet", "cleanclip"))
    assert clean.seeds == 2
    assert clean.spreads["after_asr"].mean == pytest.approx(0.15)
    assert clean.spreads["after_asr"].std == pytest.approx(statistics.stdev([0.10, 0.20]))
    assert clean.spreads["before_ca"].mean == pytest.approx(0.85)
    ders = [(0.85 - 0.04 + 1) / 2, (0.65 - 0.04 + 1) / 2]  # seed 0, seed 1
    assert clean.spreads["der"].mean == pytest.approx(statistics.fmean(ders))
    none = next(r for r in rows if r.defense == "none")
    assert none.seeds == 1 and none.spreads["after_ca"].std == 0.0


def test_sorting_and_best_follow_metric_direction(results):
    rows = leaderboard(results)
    assert [(r.attack, r.defense) for r in rows] == [
        ("badnet", "cleanclip"), ("badnet", "finetune"), ("badnet", "none"),
        ("blended", "finetune"), ("blended", "cleanclip"),
    ]  # fmt: skip
    assert {(r.attack, r.defense) for r in rows if r.best} == {
        ("badnet", "cleanclip"), ("blended", "finetune")}  # fmt: skip
    # CA after is better high: the best by it is the defense that kept the most accuracy
    by_ca = leaderboard(results, sort="after_ca")
    assert {(r.attack, r.defense) for r in by_ca if r.best} == {
        ("badnet", "finetune"), ("blended", "finetune")}  # fmt: skip
    assert by_ca[0].defense == "none"  # 0.90 CA after: first, but never "best"
    with pytest.raises(BenchbdError, match="cannot sort"):
        leaderboard(results, sort="speed")


def test_a_baseline_is_what_the_file_records_and_never_best(results):
    # files written before plugins declared it record no flag: the defense `none` is the one
    assert not next(r for r in leaderboard(results) if r.defense == "none").best
    # a file that records the flag is read by it, whatever the plugin's name
    for r in results:
        r["defense"]["baseline"] = r["defense"]["name"] == "cleanclip"
    rows = leaderboard(results)
    assert {(r.attack, r.defense) for r in rows if r.best} == {
        ("badnet", "finetune"), ("blended", "finetune")}  # fmt: skip
    assert [r.defense for r in rows if r.baseline] == ["cleanclip", "cleanclip"]
    # old and new files of one experiment are seeds of one row
    results[0]["defense"].pop("baseline")
    assert next(r for r in leaderboard(results) if r.defense == "finetune").seeds == 2


def test_filters_and_group_by(results):
    kept = apply_filters(results, parse_filters(["poison_rate=0.010"]))
    assert {r["attack"]["name"] for r in kept} == {"blended"}
    assert apply_filters(results, parse_filters(["dataset=synthetic", "defense.params.epochs=5"]))
    assert apply_filters(results, parse_filters(["model=other"])) == []
    by_name = apply_filters(results, parse_filters(["attack=blended", "defense=finetune"]))
    assert [(r["attack"]["name"], r["defense"]["name"]) for r in by_name] == [
        ("blended", "finetune")]  # fmt: skip
    with pytest.raises(BenchbdError, match="no field"):
        apply_filters(results, parse_filters(["nonsense=1"]))
    with pytest.raises(BenchbdError, match="FIELD=VALUE"):
        parse_filters(["dataset"])
    rows = leaderboard(results, group_by=["poison_rate"])
    assert {r.groups for r in rows} == {("0.03",), ("0.01",)}
    text = render(rows, "markdown", ["poison_rate"])
    assert text.splitlines()[0].startswith("| poison_rate | attack | defense |")


def test_every_format(results):
    rows = leaderboard(results)
    html = render(rows, "html")
    assert html.count("<tr") == len(rows) + 1  # the best rows' cells are <strong>
    assert html.count("<td><strong>") == 2 * 9 and "<td><strong>cleanclip</strong></td>" in html
    csv = render(rows, "csv").splitlines()
    assert csv[0].startswith(
        "attack,defense,seeds,best,rank,eligible,ranking,ca_drop,"
        "before_ca_mean,before_ca_std,before_ca_low,before_ca_high,before_ca_n"
    )
    assert csv[1].startswith("badnet,cleanclip,2,1,1,1,1,0.040000,0.850000,")
    latex = render(rows, "latex")
    assert r"\textbf{cleanclip}" in latex and r"\_" not in latex.split("\n")[0]
    assert render(rows, "markdown").count("**badnet**") == 1
    with pytest.raises(BenchbdError, match="unknown format"):
        render(rows, "xml")


BARS = "ASR after each defense (hatched: unranked, CA drop > 0.05 or untrained)"


def test_plot_is_a_png_with_a_panel_per_attack_and_the_bar_chart(results, tmp_path):
    figure = leaderboard_figure(results)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["badnet", "blended", BARS]
    badnet = figure.axes[0]
    assert len(badnet.texts) == 3  # one arrow per defense, none included
    # the ranking rule marks the picture: the best starred, blended's cleanclip (CA -0.20)
    # labelled unranked and drawn hollow
    handles, labels = figure.axes[1].get_legend_handles_labels()
    assert labels == ["poisoned", "finetune ★", "cleanclip (unranked)"]
    assert handles[2][0].get_markerfacecolor() == "white"  # the errorbar's data line
    assert handles[1][0].get_marker() == "*"
    path = write_plot(results, tmp_path / "board.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_table_of_a_thousand_files_is_read(tmp_path):
    for i in range(1000):
        data = result(f"attack{i % 4}", f"defense{i % 5}", i // 20, (0.9, 0.9), (0.9, 0.1))
        (tmp_path / f"r{i}.json").write_text(json.dumps(data))
    results, warnings = load_folder(tmp_path)
    assert len(results) == 1000 and not warnings
    assert len(leaderboard(results)) == 20


NAN = float("nan")


def write(folder, name, data):
    """One result file; NaN is written as JSON's NaN, as json.dumps does for a diverged run."""
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def row_of(rows, attack, defense):
    return next(r for r in rows if (r.attack, r.defense) == (attack, defense))


def test_a_nan_metric_is_left_out_of_the_mean_named_and_never_best(tmp_path):
    write(tmp_path, "nan.json", result("badnet", "cleanclip", 0, (0.9, 0.95), (0.9, NAN)))
    write(tmp_path, "ok.json", result("badnet", "cleanclip", 1, (0.9, 0.95), (0.9, 0.10)))
    write(tmp_path, "ft0.json", result("badnet", "finetune", 0, (0.9, 0.95), (0.9, 0.60)))
    write(tmp_path, "ft1.json", result("badnet", "finetune", 1, (0.9, 0.95), (0.9, 0.50)))
    results, _ = load_folder(tmp_path)
    board = tabulate(results)
    clean = row_of(board.rows, "badnet", "cleanclip")
    assert clean.seeds == 2
    assert clean.spreads["after_asr"].mean == pytest.approx(0.10)
    assert clean.spreads["after_asr"].nonfinite == 1
    assert clean.spreads["after_asr"].text() == "0.100 (1 nan)"
    # a defense that diverged on a seed is not crowned, even with the lowest finite mean
    assert not clean.best and row_of(board.rows, "badnet", "finetune").best
    [warning] = [w for w in board.warnings if "non-finite" in w]
    assert str(tmp_path / "nan.json") in warning and "after_asr" in warning
    assert "ok.json" not in warning


def test_nan_in_every_seed_shows_nan_and_renders_everywhere(tmp_path):
    results = [result("badnet", "cleanclip", seed, (0.9, NAN), (NAN, NAN)) for seed in (0, 1)]
    results.append(result("badnet", "finetune", 0, (0.9, 0.95), (0.9, 0.60)))
    rows = leaderboard(results)
    clean = row_of(rows, "badnet", "cleanclip")
    assert clean.spreads["after_asr"].mean is None and clean.spreads["after_asr"].text() == "nan"
    assert not clean.best and rows[-1] is clean  # after every row with a number
    for fmt in ("markdown", "csv", "latex", "html"):
        assert "cleanclip" in render(rows, fmt)
    assert write_plot(results, tmp_path / "board.png").exists()


def stray(**changes):
    """A result with some fields replaced by values of the wrong shape."""
    return {**result("a", "d", 0, (0.9, 0.9), (0.9, 0.1)), **changes}


STRAYS = {
    "wrong types": {"attack": 5, "defense": [], "metrics": "x", "seed": "a", "schema_version": 1},
    "a list": [1, 2, 3],
    "a number": 3,
    "no metrics": {k: v for k, v in stray().items() if k != "metrics"},
    "attack without a name": stray(attack={}),
    "string seed": stray(seed="0"),
    "bool seed": stray(seed=True),
    "params a list": stray(defense={"name": "d", "params": [1]}),
    "baseline a string": stray(defense={"name": "d", "baseline": "yes"}),
    "metrics.after a list": stray(metrics={"before": {}, "after": []}),
    "string metric": stray(metrics={"before": {"ca": 0.9}, "after": {"asr": "0.1"}}),
    "string der": stray(der="high"),
    "bool schema": stray(schema_version=True),
}


@pytest.mark.parametrize("name", list(STRAYS))
def test_read_result_says_why_a_file_of_another_shape_is_not_a_result(tmp_path, name):
    path = write(tmp_path, "stray.json", STRAYS[name])
    with pytest.raises(ValueError) as caught:
        read_result(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and len(message.splitlines()) == 1
    assert len(message) < 200


def test_stray_files_are_skipped_and_the_rest_of_the_folder_renders(tmp_path):
    write(tmp_path, "good0.json", result("badnet", "cleanclip", 0, (0.9, 0.95), (0.9, 0.1)))
    write(tmp_path, "good1.json", result("badnet", "finetune", 0, (0.9, 0.95), (0.9, 0.6)))
    for i, data in enumerate(STRAYS.values()):
        write(tmp_path, f"stray{i:02d}.json", data)
    results, warnings = load_folder(tmp_path)
    assert len(results) == 2 and len(warnings) == len(STRAYS)
    for i, warning in enumerate(warnings):
        assert warning.startswith(f"skipped {tmp_path / f'stray{i:02d}.json'}: ")
    assert len(leaderboard(results)) == 2
    assert write_plot(results, tmp_path / "board.png").exists()


def test_results_that_differ_in_a_setting_are_rows_apart_and_said_so():
    results = [
        result("badnet", "finetune", 0, (0.9, 0.95), (0.9, 0.60), rate=0.03),
        result("badnet", "finetune", 1, (0.9, 0.95), (0.9, 0.50), rate=0.03),
        result("badnet", "finetune", 0, (0.9, 0.95), (0.9, 0.20), rate=0.01),
        result("badnet", "cleanclip", 0, (0.9, 0.95), (0.9, 0.10), rate=0.03),
    ]
    for r in results:  # the count follows the rate: one column, both fields named
        r["poison"]["count"] = round(r["poison"]["rate"] * 20000)
    board = tabulate(results)
    assert board.group_by == ["poison_rate"]
    assert {(r.groups, r.defense, r.seeds) for r in board.rows} == {
        (("0.01",), "finetune", 1),
        (("0.03",), "finetune", 2),
        (("0.03",), "cleanclip", 1),
    }
    [warning] = board.warnings
    assert "poison_rate" in warning and "poison_count" in warning and "--group-by" in warning
    assert render(board.rows, "markdown", board.group_by).startswith("| poison_rate | attack |")
    # grouping by the setting oneself: the same rows, nothing to warn about
    chosen = tabulate(results, group_by=["poison_count"])
    assert chosen.group_by == ["poison_count"] and not chosen.warnings
    assert len(chosen.rows) == 3


def test_seed_and_per_run_fields_do_not_split_rows():
    first = result("badnet", "finetune", 0, (0.9, 0.95), (0.9, 0.60))
    second = result("badnet", "finetune", 1, (0.9, 0.95), (0.9, 0.50))
    first.update(created="2026-01-01T00:00:00+00:00", fingerprint="aa", timings={"total_s": 1},
                 poisoned_model_fingerprint="pa", pretrain_cached=False,
                 versions={"torch": "2.1"}, runtime={"device": "cpu", "threads": 1})  # fmt: skip
    second.update(created="2026-02-01T00:00:00+00:00", fingerprint="bb", timings={"total_s": 2},
                  poisoned_model_fingerprint="pb", pretrain_cached=True,
                  versions={"torch": "2.2"}, runtime={"device": "cpu", "threads": 1})  # fmt: skip
    first["poison"]["indices"], second["poison"]["indices"] = [1, 2], [3, 4]
    first["extra"] = {"attack_state": {"warp": [1]}, "defense_report": {"synonyms": "wordnet"}}
    second["extra"] = {"attack_state": {"warp": [2]}, "defense_report": {"synonyms": "dataset"}}
    # a per-run measurement (a random trigger's draws differ by seed), not a setting
    first["extra"]["trigger_visibility"] = {"psnr_db": 20.0, "ssim": 0.8, "linf": 0.9}
    second["extra"]["trigger_visibility"] = {"psnr_db": 21.0, "ssim": 0.7, "linf": 1.0}
    board = tabulate([first, second])
    assert [r.seeds for r in board.rows] == [2] and board.group_by == [] and not board.warnings


def test_a_seed_run_twice_counts_once_and_the_newest_is_kept(tmp_path):
    old = result("badnet", "finetune", 0, (0.9, 0.95), (0.9, 0.60))
    new = result("badnet", "finetune", 0, (0.9, 0.95), (0.9, 0.40))
    other = result("badnet", "finetune", 1, (0.9, 0.95), (0.9, 0.20))
    old["created"], new["created"] = "2026-01-01T10:00:00+00:00", "2026-01-02T09:00:00+00:00"
    write(tmp_path, "a-new.json", new)
    write(tmp_path, "b-old.json", old)
    write(tmp_path, "c.json", other)
    board = tabulate(load_folder(tmp_path)[0])
    [row] = board.rows
    assert row.seeds == 2 and row.spreads["after_asr"].mean == pytest.approx(0.30)
    [warning] = board.warnings
    assert str(tmp_path / "b-old.json") in warning and "a-new.json" not in warning


def test_a_row_mixing_kernel_levels_or_threads_warns_once_and_stays_one_row():
    results = [result("badnet", "cleanclip", seed, (0.9, 0.95), (0.9, 0.1)) for seed in range(3)]
    results[0]["runtime"] = {"threads": 1, "kernels": {"level": "native-avx512"}}
    results[1]["runtime"] = {"threads": 1, "kernels": {"level": "portable-avx2"}}
    results[2]["runtime"] = {"threads": 2}  # an older file: no kernels recorded
    board = tabulate(results)
    assert [r.seeds for r in board.rows] == [3] and board.group_by == []
    [warning] = board.warnings
    for text in ("badnet", "cleanclip", "native-avx512", "portable-avx2", "unrecorded",
                 "runtime.threads", "bit-comparable"):  # fmt: skip
        assert text in warning
    for r in results:
        r["runtime"] = {"threads": 1, "kernels": {"level": "portable-avx2"}}
    assert not tabulate(results).warnings


def test_sort_choices_are_exactly_the_metric_columns(results):
    shown = dict(COLUMNS)
    assert set(SORT_CHOICES) == set(shown)
    for key in SORT_CHOICES:  # each has a direction, so each can be sorted by and marked
        assert any(r.best for r in leaderboard(results, sort=key))
    for wrong in ("ra", "after_ra", "before_ra", "ca_top5", "RA", "CA after"):
        with pytest.raises(BenchbdError, match="choose from before_ca, before_asr, after_ca"):
            leaderboard(results, sort=wrong)


def test_a_field_only_newer_files_record_groups_and_filters_them(results):
    results[0]["runtime"] = {"kernels": {"level": "native-avx512"}}
    rows = leaderboard(results, group_by=["runtime.kernels.level"])
    assert {r.groups for r in rows} == {("native-avx512",), ("-",)}
    kept = apply_filters(results, parse_filters(["runtime.kernels.level=native-avx512"]))
    assert kept == [results[0]]
    with pytest.raises(BenchbdError, match="no field 'runtime.kernels.levl'"):
        leaderboard(results, group_by=["runtime.kernels.levl"])


def test_plot_gives_each_setting_of_an_attack_its_own_panel():
    results = [
        result("badnet", "finetune", 0, (0.9, 0.95), (0.9, 0.60), rate=0.03),
        result("badnet", "finetune", 0, (0.9, 0.95), (0.9, 0.20), rate=0.01),
        result("blended", "finetune", 0, (0.9, 0.95), (0.9, 0.20), rate=0.01),
    ]
    titles = [ax.get_title() for ax in leaderboard_figure(results).axes]
    assert titles == ["badnet\npoison_rate=0.01", "badnet\npoison_rate=0.03",
                      "blended\npoison_rate=0.01", BARS]  # fmt: skip


def test_defenses_of_one_attack_are_ranked_only_against_the_same_poisoned_model():
    results = [
        result("badnet", "cleanclip", 0, (0.9, 0.95), (0.9, 0.10), rate=0.03),
        result("badnet", "finetune", 0, (0.9, 0.95), (0.9, 0.05), rate=0.01),
    ]
    board = tabulate(results)
    assert board.group_by == ["poison_rate"] and all(r.best for r in board.rows)
    assert "results of the same attack differ in poison_rate" in board.warnings[0]
    # the defenses' own parameters differ from defense to defense: that splits nothing
    same = [result("badnet", "cleanclip", 0, (0.9, 0.95), (0.9, 0.10), epochs=5.0),
            result("badnet", "finetune", 0, (0.9, 0.95), (0.9, 0.05), epochs=10.0)]  # fmt: skip
    board = tabulate(same)
    assert board.group_by == [] and not board.warnings
    assert [(r.defense, r.best) for r in board.rows] == [("finetune", True), ("cleanclip", False)]


def test_visibility_columns_are_means_over_seeds_and_dash_without_them(results):
    plain = {fmt: render(leaderboard(results), fmt) for fmt in ("markdown", "csv", "latex")}
    for r, psnr in zip(results[:2], (20.0, 22.0), strict=True):  # badnet + finetune, 2 seeds
        r["extra"] = {"trigger_visibility": {"psnr_db": psnr, "ssim": 0.9, "linf": 0.5}}
    rows = leaderboard(results)
    # without the option nothing changes, with or without recorded visibility
    assert {fmt: render(rows, fmt) for fmt in plain} == plain
    markdown = render(rows, "markdown", visibility=True).splitlines()
    assert markdown[0].endswith("| DER | PSNR | SSIM | L-inf |")
    line = next(x for x in markdown if "badnet" in x and "finetune" in x)
    assert line.endswith("| 21.000 [8.294, 33.706] | 0.900 [0.900, 0.900] | 0.500 [0.500, 0.500] |")
    blended = next(x for x in markdown if "blended" in x and "finetune" in x)
    assert blended.replace("*", "").endswith("| - | - | - |")
    csv = render(rows, "csv", visibility=True).splitlines()
    tail = ",der_n,psnr_db_mean,psnr_db_std,psnr_db_low,psnr_db_high,psnr_db_n,ssim_mean"
    assert tail in csv[0] and csv[0].endswith(",linf_mean,linf_std,linf_low,linf_high,linf_n")
    assert next(x for x in csv if x.startswith("badnet,finetune,")).endswith(
        ",21.000000,1.414214,8.293795,33.706205,2,0.900000,0.000000,0.900000,0.900000,2,"
        "0.500000,0.000000,0.500000,0.500000,2"
    )
    assert render(rows, "html", visibility=True).count("<th>L-inf</th>") == 1
    assert "L-inf" in render(rows, "latex", visibility=True)


def test_ra_is_sorted_by_only_as_a_column_the_table_shows(results):
    ra = {"finetune": 0.3, "cleanclip": 0.7, "none": 0.0}  # higher is better, as for CA
    for r in results:
        r["metrics"]["after"]["ra"] = ra[r["defense"]["name"]]
    shown = ["after_ca", "after_asr", "after_ra"]
    board = tabulate(results, sort="after_ra", columns=shown)
    # blended's cleanclip has the higher RA but loses 0.20 of CA: it ranks after finetune
    assert [(r.attack, r.defense) for r in board.rows] == [
        ("badnet", "cleanclip"), ("badnet", "finetune"), ("badnet", "none"),
        ("blended", "finetune"), ("blended", "cleanclip"),
    ]  # fmt: skip
    assert {(r.attack, r.defense) for r in board.rows if r.best} == {
        ("badnet", "cleanclip"), ("blended", "finetune")}  # fmt: skip
    markdown = render(board.rows, "markdown", columns=shown).splitlines()
    assert markdown[0] == "| attack | defense | seeds | rank | CA after | ASR after | RA after |"
    assert markdown[2].endswith("| **0.700 [0.700, 0.700]** |")
    assert markdown[-1].endswith("| unranked: CA drop 0.200 > 0.05 | 0.700 | 0.500 | 0.700 |")
    csv = render(board.rows, "csv", columns=shown).splitlines()
    assert csv[0].endswith(",after_ra_mean,after_ra_std,after_ra_low,after_ra_high,after_ra_n")
    # every row carries every recorded metric, shown or not
    assert board.rows[0].spreads["before_ra"].mean == 0.0
    # the default table does not show RA, so it does not sort by it either
    with pytest.raises(BenchbdError, match=r"cannot sort by 'after_ra'.*--columns"):
        tabulate(results, sort="after_ra")


def with_recall(results):
    for i, r in enumerate(results):
        r["metrics"]["before"]["recall_at_1"] = 0.5
        r["metrics"]["after"]["recall_at_1"] = 0.1 * (i + 1)
    return results


def test_any_numeric_metric_recorded_is_a_column_and_a_sort_key(results):
    with_recall(results)
    shown = ["after_ca", "after_asr", "metrics.after.recall_at_1"]  # a dotted path works too
    board = tabulate(results, sort="after_recall_at_1", columns=shown)
    best = {(r.attack, r.defense) for r in board.rows if r.best}
    # the highest recall of those whose CA drop is within 0.05 (blended's cleanclip loses 0.20)
    assert best == {("badnet", "cleanclip"), ("blended", "finetune")}
    assert any("after_recall_at_1" in w and "HIGHER_IS_BETTER" in w for w in board.warnings)
    text = render(board.rows, "markdown", columns=shown)
    assert text.splitlines()[0].endswith("| ASR after | recall_at_1 after |")
    with pytest.raises(BenchbdError, match="did you mean 'after_recall_at_1'"):
        tabulate(results, columns=["after_recal_at_1"])
    with pytest.raises(BenchbdError, match="numeric"):  # recorded, but text
        tabulate(results, columns=["after_classifier"], sort="after_classifier")


def test_table_command_takes_columns_and_documents_them(tmp_path):
    from typer.testing import CliRunner

    from benchbd.cli import app

    for i, data in enumerate(with_recall([
        result("badnet", "finetune", 0, (0.9, 0.95), (0.88, 0.60)),
        result("badnet", "cleanclip", 0, (0.9, 0.95), (0.86, 0.10)),
    ])):  # fmt: skip
        write(tmp_path, f"r{i}.json", data)
    runner = CliRunner()
    args = ["table", str(tmp_path), "--format", "csv", "--columns", "after_ca,after_asr",
            "--columns", "after_recall_at_1", "--sort", "after_recall_at_1"]  # fmt: skip
    made = runner.invoke(app, args)
    assert made.exit_code == 0, made.output
    assert made.stdout.splitlines()[0] == (
        "attack,defense,seeds,best,rank,eligible,ranking,ca_drop,"
        + ",".join(f"{key}_{part}" for key in ("after_ca", "after_asr", "after_recall_at_1")
                   for part in ("mean", "std", "low", "high", "n")))  # fmt: skip
    assert made.stdout.splitlines()[1].startswith("badnet,cleanclip,1,1,1,1,")
    # without --sort, the table ranks by ASR after when shown, else by its first column
    made = runner.invoke(app, ["table", str(tmp_path), "-f", "csv", "-c", "after_recall_at_1"])
    assert made.exit_code == 0, made.output
    wrong = runner.invoke(app, ["table", str(tmp_path), "--columns", "after_recal_at_1"])
    assert wrong.exit_code == 2 and "did you mean 'after_recall_at_1'" in wrong.output
    shown = runner.invoke(app, ["table", "--help"], env={"COLUMNS": "200"})
    assert "--columns" in shown.output and "after_ra" in shown.output


def cells(line):
    """The cells of a GFM table line (no cell of these tables holds an escaped pipe)."""
    assert line.startswith("|") and line.endswith("|"), line
    return [cell.strip() for cell in line[1:-1].split("|")]


def test_each_format_is_what_its_readers_expect(results):
    import io
    import re
    from html.parser import HTMLParser

    import pandas as pd

    board = tabulate(results, group_by=["poison_rate"])
    rows, heads = board.rows, ["poison_rate", "attack", "defense", "seeds", "rank", "CA before",
                               "ASR before", "CA after", "ASR after", "DER"]  # fmt: skip
    # markdown: a GFM table, header, delimiter row, one line per row, as many cells in each
    lines = render(rows, "markdown", board.group_by).splitlines()
    assert cells(lines[0]) == heads and len(lines) == len(rows) + 2
    assert all(re.fullmatch(r":?-+:?", c) for c in cells(lines[1]))
    assert all(len(cells(line)) == len(heads) for line in lines)
    # CSV: one header row, numbers as numbers
    frame = pd.read_csv(io.StringIO(render(rows, "csv", board.group_by)))
    assert len(frame) == len(rows) and list(frame.columns[:5]) == [
        "poison_rate", "attack", "defense", "seeds", "best"]  # fmt: skip
    assert frame["best"].sum() == 2 and frame["seeds"].tolist() == [r.seeds for r in rows]
    assert frame["after_asr_mean"].tolist() == pytest.approx(
        [r.spreads["after_asr"].mean for r in rows])  # fmt: skip
    # LaTeX: one booktabs tabular, a column spec per column, a line per row
    latex = render(rows, "latex", board.group_by).splitlines()
    assert latex[0] == r"\begin{tabular}{lllrrrrrrr}" and latex[-1] == r"\end{tabular}"
    assert latex[1] == r"\toprule" and latex[3] == r"\midrule" and latex[-2] == r"\bottomrule"
    body = latex[2:3] + latex[4:-2]
    assert len(body) == len(rows) + 1
    assert all(line.endswith(r"\\") and line.count("&") == len(heads) - 1 for line in body)
    assert r"poison\_rate" in latex[2] and "0.150 [-0.485, 0.785]" in "\n".join(latex)

    class Table(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.rows = 0, []

        def handle_starttag(self, tag, attrs):
            self.tables += tag == "table"
            if tag == "tr":
                self.rows.append([])
            if tag in ("td", "th"):
                self.rows[-1].append("")

        def handle_data(self, data):
            if self.rows and self.rows[-1] and data.strip():
                self.rows[-1][-1] += data.strip()

    parsed = Table()
    parsed.feed(render(rows, "html", board.group_by))
    assert parsed.tables == 1 and parsed.rows[0] == heads and len(parsed.rows) == len(rows) + 1
    assert [r[2] for r in parsed.rows[1:]] == [r.defense for r in rows]


def test_results_are_one_frame_without_the_big_per_run_lists(results):
    results[0]["poison"]["indices"] = list(range(600))
    results[0]["metrics"]["after"]["asr"] = float("nan")  # recorded NaN: not "not recorded"
    results[1]["metrics"]["after"]["asr"] = None
    frame = results_frame(results)
    assert len(frame) == len(results) and "poison.indices" not in frame.columns
    assert {"attack.name", "poison.rate", "metrics.after.asr", "der"} <= set(frame.columns)
    assert frame["metrics.after.asr"].iloc[0] == float("inf")
    assert frame["metrics.after.asr"].isna().tolist()[:2] == [False, True]
    # a field the frame leaves out is still found in the files by --filter and --group-by
    assert apply_filters(results, parse_filters(["poison.indices=[]"])) == []


def test_importing_the_leaderboard_does_not_import_pandas():
    import subprocess
    import sys

    code = "import sys, benchbd.reporting.leaderboard; assert 'pandas' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs pdflatex")
def test_latex_compiles(results, tmp_path):
    import subprocess

    board = tabulate(results, group_by=["attack"])  # a header shown twice, escapes, ±
    (tmp_path / "table.tex").write_text(render(board.rows, "latex", board.group_by, True))
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        "\\input{table.tex}\n\\end{document}\n"
    )
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]


def test_group_text_is_what_a_group_column_shows(results):
    results[0]["dataset"]["sizes"] = {"train": 3_000_000}  # whole numbers in full, in any column
    results[1]["runtime"] = {"kernels": {"level": None}}
    board = tabulate(results, group_by=["dataset.sizes.train"])
    assert {r.groups for r in board.rows} == {("3000000",), ("-",)}
    for r in results:
        for name in ("poison_rate", "attack", "defense.params", "dataset.sizes.train",
                     "runtime.kernels.level", "seed"):  # fmt: skip
            try:
                shown = leaderboard([r], group_by=[name])[0].groups[0]
            except BenchbdError:
                shown = None
            assert group_text(r, name) == shown, (name, r)


def test_a_metric_that_declares_its_direction_ranks_by_it_without_a_warning(results):
    for r in results:  # the opt-in linear probe's ASR, better low (results.HIGHER_IS_BETTER)
        r["metrics"]["after"]["probe_asr"] = 1.0 - r["metrics"]["after"]["asr"]
    board = tabulate(results, sort="after_probe_asr", columns=["after_asr", "after_probe_asr"])
    assert not board.warnings
    # blended's cleanclip has the lower probe ASR but loses 0.20 of CA: finetune ranks first
    assert {(r.attack, r.defense) for r in board.rows if r.best} == {
        ("badnet", "finetune"), ("blended", "finetune")}  # fmt: skip
    assert render(board.rows, "markdown", columns=["after_asr", "after_probe_asr"]).startswith(
        "| attack | defense | seeds | rank | ASR after | probe_asr after |"
    )


def test_a_screens_detection_numbers_are_columns_sorted_by_their_direction():
    """metrics.detection.* (a screening defense's AUROC, TPR at 1 % FPR, poisons removed) are
    columns like the before / after metrics, each sorted the way it is better."""
    import copy
    import json
    from pathlib import Path

    from benchbd.reporting.leaderboard import column_header, tabulate

    reference = Path(__file__).resolve().parent.parent / "results"
    base = json.loads(next(reference.glob("badnet__finetune__seed0__*.json")).read_text())
    results = []
    for name, auroc in (("lof", 0.70), ("kdistance", 0.99)):
        result = copy.deepcopy(base)
        result["defense"]["name"] = name
        result["metrics"]["detection"] = {"auroc": auroc, "tpr_at_1fpr": auroc / 2,
                                          "poisons_removed": auroc}  # fmt: skip
        results.append(result)
    columns = ["after_ca", "after_asr", "detection_auroc", "detection_tpr_at_1fpr",
               "metrics.detection.poisons_removed"]  # fmt: skip
    board = tabulate(results, columns=columns, sort="detection_auroc")
    assert [row.defense for row in board.rows] == ["kdistance", "lof"]
    assert board.rows[0].spreads["detection_auroc"].mean == 0.99
    assert column_header("detection_tpr_at_1fpr") == "detection TPR@1%FPR"
