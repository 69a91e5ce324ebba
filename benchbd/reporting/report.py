"""`benchbd report`: a folder of result files as a static leaderboard site.

The site is one page (`index.html`, see `report_html`) with the pictures beside it: the
trade-off plot of `benchbd plot` (`leaderboard.png`) and one trigger grid of `benchbd show` per
attack (`triggers/`), of the images the caller's `examples` makes (report_gallery: reporting
lays the gallery out, the engine behind the CLI makes the images). With `--all`
(`write_sites`) it is one such page per folder of result files under the one given, each in a
folder of its own, one page per zoo folder (`benchbd zoo --detect`: its model detectors'
table and scores, benchbd.reporting.report_zoo), and an index page that links them all. A
zoo folder given alone is its own site.
It reads offline, from a file:// URL as from any web server, and holds no date, so a site made
again from the same files is the same bytes.

Written whole or not at all: the site is built in a temporary folder beside `--out` and renamed
into place, so a reader never finds half a site, and an interrupted report leaves the previous
one as it was. An existing `--out` is replaced only when it is empty or an earlier site (its
page says `benchbd report` made it): a report never deletes a folder of other files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from benchbd import __version__
from benchbd.core.cache import remove_stale_temporaries, temporary_prefix, writable_folder
from benchbd.core.errors import BenchbdError
from benchbd.reporting.ranking import DEFAULT_CA_TOLERANCE, check_tolerance
from benchbd.reporting.report_cells import Table, table
from benchbd.reporting.report_gallery import Trigger, TriggerExamples, draw
from benchbd.reporting.report_html import GENERATOR, Page, page
from benchbd.reporting.report_index import GridLine, ZooLine, index_page
from benchbd.reporting.report_zoo import write_zoo_page
from benchbd.reporting.result_frame import load_folder
from benchbd.reporting.trade_off_plot import write_plot
from benchbd.reporting.zoo_frame import PATTERN as ZOO_PATTERN
from benchbd.reporting.zoo_frame import Zoo, is_zoo_folder, read_zoo

PAGE = "index.html"
PLOT = "leaderboard.png"


@dataclass(frozen=True)
class Site:
    """What was written, for the command's last line, and what the reader should be told."""

    page: Path
    rows: int
    results: int
    triggers: int
    warnings: list[str]
    zoo: bool = False  # a zoo's page: `rows` detectors, `results` models


def write_site(folder: Path, out: Path, examples: TriggerExamples | None = None,
               images: int = 6, ca_tolerance: float = DEFAULT_CA_TOLERANCE) -> Site:  # fmt: skip
    """Read every result file in `folder` and write the site into `out` (replacing an earlier
    site there), with a trigger gallery of `images` test images a trigger drawn by `examples`;
    without `examples` the gallery is left out, and with it torch. A zoo folder is written as
    its zoo page."""
    out = Path(out)
    if is_zoo_folder(Path(folder)):
        zoo = read_zoo(Path(folder))
        check_out(out)
        with _building(out) as build:
            write_zoo_page(zoo, build, _source_name(Path(folder)), __version__)
        return _zoo_site(zoo, out / PAGE)
    results, warnings = load_folder(Path(folder))
    check_out(out)
    board = table(results, check_tolerance(ca_tolerance))
    with _building(out) as build:
        built = _grid_page(Path(folder), results, warnings, board, build, examples, images)
    return replace(built, page=out / PAGE)


def write_sites(root: Path, out: Path, examples: TriggerExamples | None = None,
                images: int = 6,
                ca_tolerance: float = DEFAULT_CA_TOLERANCE) -> list[Site]:  # fmt: skip
    """`--all`: every folder of result files under `root` (itself included) as a page of its
    own in `out/<its path, / as ->/`, every zoo folder's page likewise, and an index page
    (`out/index.html`) that links them. Written whole or not at all, as one site."""
    root, out = Path(root), Path(out)
    tolerance = check_tolerance(ca_tolerance)
    grids = result_folders(root)
    zoos = [(folder, read_zoo(folder)) for folder in zoo_folders(root)]
    if not grids and not zoos:
        raise BenchbdError(f"no folder of result files under {str(root)!r}")
    check_out(out)
    loaded = [(folder, *load_folder(folder)) for folder in grids]
    boards = [table(results, tolerance) for _, results, _ in loaded]
    sites: list[Site] = []
    with _building(out) as build:
        for (folder, results, warnings), board in zip(loaded, boards, strict=True):
            slug = grid_slug(root, folder)
            made = _grid_page(folder, results, warnings, board, build / slug, examples, images,
                              back="../index.html", name=_grid_name(root, folder))  # fmt: skip
            sites.append(replace(made, page=out / slug / PAGE))
        entries = [GridLine(_grid_name(root, folder), f"{grid_slug(root, folder)}/{PAGE}",
                            site.results, site.rows, len(site.warnings))
                   for folder, site in zip(grids, sites, strict=True)]  # fmt: skip
        taken = {grid_slug(root, folder) for folder in grids}
        zoo_lines = []
        for folder, zoo in zoos:
            slug = grid_slug(root, folder)
            slug = f"{slug}-zoo" if slug in taken else slug  # a folder both a grid and a zoo
            write_zoo_page(zoo, build / slug, _grid_name(root, folder), __version__,
                           back="../index.html")  # fmt: skip
            sites.append(_zoo_site(zoo, out / slug / PAGE))
            zoo_lines.append(ZooLine(_grid_name(root, folder), f"{slug}/{PAGE}", zoo.models,
                                     len(zoo.detections), len(zoo.warnings)))  # fmt: skip
        (build / PAGE).write_text(index_page(entries, tolerance, __version__, zoo_lines),
                                  encoding="utf-8")  # fmt: skip
    return sites


def zoo_folders(root: Path) -> list[Path]:
    """`root` and every folder below it that holds a model detector's scores (`detect-*.json`),
    in path order. A zoo not yet scored (its manifest alone) has nothing to show: left out."""
    return sorted({p.parent for p in Path(root).rglob(ZOO_PATTERN)})


def _zoo_site(zoo: Zoo, page: Path) -> Site:
    return Site(page, len(zoo.detections), zoo.models, 0, list(zoo.warnings), zoo=True)


def result_folders(root: Path) -> list[Path]:
    """`root` and every folder below it that holds result files, in path order."""
    found = []
    for folder in sorted({p.parent for p in Path(root).rglob("*.json")} | {Path(root)}):
        try:
            load_folder(folder)
        except BenchbdError:
            continue
        found.append(folder)
    return found


def grid_slug(root: Path, folder: Path) -> str:
    """A grid's folder inside the site: its path under `root`, "/" as "-" (root: its name)."""
    relative = folder.relative_to(root).as_posix()
    return _source_name(root) if relative == "." else relative.replace("/", "-")


def _grid_name(root: Path, folder: Path) -> str:
    relative = folder.relative_to(root).as_posix()
    return _source_name(root) if relative == "." else f"{_source_name(root)}/{relative}"


@contextlib.contextmanager
def _building(out: Path) -> Iterator[Path]:
    """A temporary folder beside `out` to build the site in, moved into place on success and
    removed on failure."""
    remove_stale_temporaries(out.parent)
    build = Path(tempfile.mkdtemp(dir=out.parent, prefix=temporary_prefix(out.name),
                                  suffix=".tmp"))  # fmt: skip
    try:
        yield build
        os.chmod(build, 0o777 & ~_umask())  # mkdtemp makes 0700; a site is for reading
        _publish(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise


def _grid_page(folder: Path, results: list[dict], warnings: list[str], board: Table,
               build: Path, examples: TriggerExamples | None, images: int,
               back: str | None = None,
               name: str | None = None) -> Site:  # fmt: skip
    """One grid's page and pictures in `build`."""
    build.mkdir(parents=True, exist_ok=True)
    drawn = _pictures(results, build, examples, images, board.tolerance)
    missing = [f"trigger of {t.caption} not drawn: {t.reason}" for t in drawn or [] if t.reason]
    content = Page(name or _source_name(folder), len(results), board, PLOT, drawn,
                   warnings + board.warnings + missing, __version__, back)  # fmt: skip
    (build / PAGE).write_text(page(content), encoding="utf-8")
    count = sum(1 for t in drawn or [] if t.file)
    return Site(build / PAGE, len(board.cells), len(results), count,
                warnings + board.warnings + missing)  # fmt: skip


def check_out(out: Path) -> None:
    """Refuse, before any work, an `--out` that is a file or a folder of other things, and
    one whose parent cannot be written to."""
    if out.exists() and not out.is_dir():
        raise BenchbdError(f"--out {str(out)!r} is a file; give a folder for the site")
    if out.is_dir() and any(out.iterdir()) and not is_site(out):
        raise BenchbdError(f"--out {str(out)!r} is a folder of other files; give a new or empty "
                           f"folder, or an earlier site to replace")  # fmt: skip
    writable_folder(out.parent, what="the folder of --out")


def is_site(folder: Path) -> bool:
    """Whether a folder holds a site `benchbd report` wrote (its page names the generator)."""
    try:
        with open(folder / PAGE, encoding="utf-8", errors="replace") as handle:
            head = handle.read(2048)
    except OSError:
        return False
    return f'<meta name="generator" content="{GENERATOR}">' in head


def _pictures(results: list[dict], build: Path, examples: TriggerExamples | None, images: int,
              tolerance: float) -> list[Trigger] | None:  # fmt: skip
    """The trade-off plot, and the gallery when `examples` is given (None: not asked for)."""
    write_plot(results, build / PLOT, ca_tolerance=tolerance)
    return draw(results, build, images, examples) if examples is not None else None


def _source_name(folder: Path) -> str:
    """The folder's own name, never its full path: the page may be published."""
    return folder.name or folder.resolve().name or str(folder)


def _publish(build: Path, out: Path) -> None:
    """Move the finished site into place. An earlier site is first renamed aside (under a
    temporary name that a later report removes if this one is killed), then deleted."""
    if not out.exists():
        os.replace(build, out)
        return
    aside = Path(tempfile.mkdtemp(dir=out.parent, prefix=temporary_prefix(out.name),
                                  suffix=".tmp"))  # fmt: skip
    os.replace(out, aside / "previous")
    try:
        os.replace(build, out)
    except BaseException:
        os.replace(aside / "previous", out)  # put the earlier site back
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
