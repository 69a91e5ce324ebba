"""`benchbd report`: the static leaderboard site, read from disk and opened in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.cli.report_cmd import trigger_images
from benchbd.reporting.leaderboard import leaderboard, load_folder
from benchbd.reporting.report import write_site

RESULTS = Path(__file__).resolve().parents[1] / "results"
# Two attacks, a row with two seeds (a spread), a baseline defense per attack.
PICKED = ["badnet__none__seed0", "badnet__cleanclip__seed0", "badnet__cleanclip__seed1",
          "wanet__none__seed0", "wanet__finetune__seed0"]  # fmt: skip
SHOWN = ["before_ca", "before_asr", "after_ca", "after_asr", "der", "psnr_db", "ssim", "linf"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
runner = CliRunner()


def copy_results(folder: Path, picked: list[str] = PICKED) -> Path:
    """Reference result files copied into `folder`, with two edits. Their dataset sizes are
    cut to tiny ones, all alike (so rows still do not split), so that drawing a trigger
    generates a small synthetic dataset, not the reference's 29,000 images. One trigger's
    PSNR is set below 10 dB, so that its number sorts before the others' (14.8, 18.3) only if
    numbers sort as numbers."""
    folder.mkdir(parents=True)
    for stem in picked:
        source = next(RESULTS.glob(f"{stem}__*.json"))
        data = json.loads(source.read_text())
        data["dataset"]["sizes"] = {"train": 1024, "clean": 256, "test": 200, "validation": 200}
        if stem == "wanet__finetune__seed0":
            data["extra"]["trigger_visibility"]["psnr_db"] = 9.5
        (folder / source.name).write_text(json.dumps(data, indent=2))
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report")
    folder = copy_results(root / "results")
    write_site(folder, root / "site", trigger_images, images=3)
    return folder, root / "site"


def rows_in(page: str) -> list[str]:
    """Each table row's text, in page order, keyed by its leaderboard index."""
    return re.findall(r'<tr[^>]*data-row="(\d+)"', page)


@pytest.mark.slow
def test_site_shows_rows_spreads_pictures_and_configurations(site):
    folder, out = site
    page = (out / "index.html").read_text()
    results, _ = load_folder(folder)
    rows = leaderboard(results)
    assert rows_in(page) == [str(i) for i in range(len(rows))]
    for i, row in enumerate(rows):
        line = re.search(rf'<tr[^>]*data-row="{i}".*?</tr>', page).group(0)
        assert f">{row.attack}<" in line and f">{row.defense}</a>" in line
        for key in SHOWN:
            text = row.spreads[key].text(row.seeds)
            assert f'data-sort="{row.spreads[key].mean!r}">{text}<' in line
        assert f">{row.rank_text}<" in line  # the rank column, by the tables' rule
    two_seeds = next(i for i, row in enumerate(rows) if row.seeds == 2)
    interval = rows[two_seeds].spreads["after_asr"]  # the 95 % t interval beside the mean
    assert f"[{interval.low:.3f}, {interval.high:.3f}]" in re.search(
        rf'<tr[^>]*data-row="{two_seeds}".*?</tr>', page).group(0)  # fmt: skip
    for result in results:  # every file's recorded configuration, in its row's details
        i = next(
            i
            for i, r in enumerate(rows)
            if (r.attack, r.defense) == (result["attack"]["name"], result["defense"]["name"])
        )
        details = re.search(rf'<details id="cell-{i}">.*?</details>', page, re.S).group(0)
        for text in (
            result["fingerprint"],
            result.path.name,
            "pretrain.lr",
            "versions.torch",
            "attack.params." + next(iter(result["attack"]["params"])),
        ):
            assert text in details
    for picture in ("leaderboard.png", "triggers/badnet.png", "triggers/wanet.png"):
        assert f'src="{picture}"' in page
        with Image.open(out / picture) as image:
            assert image.format == "PNG" and image.width > 200
    assert "://" not in page and "<link" not in page and "<script src" not in page  # offline


@pytest.fixture(scope="module")
def browser() -> str:
    """A headless Chromium or Chrome, found before the site is built so that a skip is quick."""
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if found is None:
        pytest.skip(
            "no headless browser on PATH: install Debian's chromium package "
            "(apt-get install chromium) to run this test"
        )
    return found


@pytest.mark.slow
def test_browser_renders_the_page_and_a_header_click_sorts_numerically(browser, site, tmp_path):
    folder, out = site
    url = (out / "index.html").as_uri()
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip

    # ?sort=psnr_db makes the page's own script click that header once loaded.
    dom = subprocess.run([*base, "--dump-dom", f"{url}?sort=psnr_db"], capture_output=True,
                         text=True, timeout=90, check=True).stdout  # fmt: skip
    rows = leaderboard(load_folder(folder)[0])
    by_psnr = sorted(range(len(rows)), key=lambda i: rows[i].spreads["psnr_db"].mean)
    assert by_psnr != list(range(len(rows)))  # the click has something to change
    assert rows_in(dom) == [str(i) for i in by_psnr]
    assert re.search(r'data-key="psnr_db"[^>]*aria-sort="ascending"', dom)

    shot = tmp_path / "site.png"
    subprocess.run([*base, "--window-size=1280,1800", f"--screenshot={shot}", url],
                   capture_output=True, timeout=90, check=True)  # fmt: skip
    with Image.open(shot) as image:
        assert image.size == (1280, 1800)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 50  # text, table and plots, not a blank page


def one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("benchbd: error: "), result.output
    return lines[0]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    results = copy_results(tmp_path / "results", PICKED[:1])
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    cases = [
        (tmp_path / "missing", tmp_path / "out", "does not exist"),
        (tmp_path / "empty", tmp_path / "out", "no result files"),
        (results, tmp_path / "a_file", "is a file"),
        (results, tmp_path / "mine", "folder of other files"),
    ]
    for folder, out, message in cases:
        result = runner.invoke(app, ["report", str(folder), "--out", str(out), "--no-triggers"])
        assert message in one_line_error(result)
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "a_file").read_text() == "not a folder"
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "empty", "mine", "results"]


def test_report_replaces_an_earlier_site_whole(tmp_path):
    out = tmp_path / "site"
    first = runner.invoke(app, ["report", str(copy_results(tmp_path / "one", PICKED[:1])),
                                "--out", str(out), "--no-triggers"])  # fmt: skip
    assert first.exit_code == 0, first.output
    assert "report: " in first.output and "1 rows from 1 result files" in first.output
    assert len(rows_in((out / "index.html").read_text())) == 1
    second = runner.invoke(app, ["report", str(copy_results(tmp_path / "two", PICKED[:3])),
                                 "--out", str(out), "--no-triggers"])  # fmt: skip
    assert second.exit_code == 0, second.output
    assert len(rows_in((out / "index.html").read_text())) == 2
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "leaderboard.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "site", "two"]  # no leftovers


def test_an_interrupted_report_leaves_the_earlier_site_as_it_was(tmp_path, monkeypatch):
    import benchbd.reporting.report

    out = tmp_path / "site"
    write_site(copy_results(tmp_path / "results", PICKED[:1]), out)
    before = (out / "index.html").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchbd.reporting.report, "write_plot", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_site(tmp_path / "results", out)
    assert (out / "index.html").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "site"]
