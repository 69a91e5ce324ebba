"""`benchbd report`: a folder of result files as a static leaderboard site.

The site is one page (`index.html`, see `report_html`) with the pictures beside it: the
trade-off plot of `benchbd plot` (`leaderboard.png`) and one trigger grid of `benchbd show` per
attack (`triggers/`). It reads offline, from a file:// URL as from any web server, and holds no
date, so a site made again from the same files is the same bytes.

Written whole or not at all: the site is built in a temporary folder beside `--out` and renamed
into place, so a reader never finds half a site, and an interrupted report leaves the previous
one as it was. An existing `--out` is replaced only when it is empty or an earlier site (its
page says `benchbd report` made it): a report never deletes a folder of other files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchbd import __version__
from benchbd.cache import remove_stale_temporaries, temporary_prefix, writable_folder
from benchbd.errors import BenchbdError
from benchbd.report_cells import table
from benchbd.report_gallery import Trigger, draw
from benchbd.report_html import GENERATOR, Page, page
from benchbd.result_frame import load_folder

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


def write_site(folder: Path, out: Path, triggers: bool = True, images: int = 6) -> Site:
    """Read every result file in `folder` and write the site into `out` (replacing an earlier
    site there). `triggers=False` leaves the gallery out, and with it torch."""
    results, warnings = load_folder(Path(folder))
    out = Path(out)
    check_out(out)
    board = table(results)
    remove_stale_temporaries(out.parent)
    build = Path(tempfile.mkdtemp(dir=out.parent, prefix=temporary_prefix(out.name),
                                  suffix=".tmp"))  # fmt: skip
    try:
        drawn = _pictures(results, build, triggers, images)
        missing = [f"trigger of {t.caption} not drawn: {t.reason}" for t in drawn or [] if t.reason]
        content = Page(_source_name(Path(folder)), len(results), board, PLOT, drawn,
                       warnings + missing, __version__)  # fmt: skip
        (build / PAGE).write_text(page(content), encoding="utf-8")
        os.chmod(build, 0o777 & ~_umask())  # mkdtemp makes 0700; a site is for reading
        _publish(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    count = sum(1 for t in drawn or [] if t.file)
    return Site(out / PAGE, len(board.cells), len(results), count, warnings + missing)


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


def _pictures(results: list[dict], build: Path, triggers: bool,
              images: int) -> list[Trigger] | None:  # fmt: skip
    from benchbd.trade_off_plot import write_plot

    write_plot(results, build / PLOT)
    return draw(results, build, images) if triggers else None


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
