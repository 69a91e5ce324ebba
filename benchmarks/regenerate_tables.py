"""Every committed table, plot and the site, made again from the committed result files.

Run it after any change to result files or to how tables rank (nothing is trained):

    python benchmarks/regenerate_tables.py [--results results] [--site docs/site]
        [--ca-tolerance 0.05]

For each folder of result files under `--results` (itself included), as a user would:

    benchbd table DIR --format markdown > DIR/LEADERBOARD.md
    benchbd plot DIR --out DIR/leaderboard.png      # and -roc.png, -curves.png where they apply

except the in-modal weight ablation, whose table and plot are ABLATION.md and ablation.png
(`benchbd table DIR --group-by defense.params.inmodal_weight`, the weights in order). Then the
detection tables of the grids with screens (DETECTION.md, the commands in DETECTION below),
the objective axis's curves (CURVES.md), the table in each zoo folder's README.md (between its
markers: `benchbd table ZOO --format markdown`), and the site of every grid and zoo:

    benchbd report results --out docs/site --all --no-triggers

and the claims' page and every citation of a claim in the README and docs:

    benchbd claims results/claims.toml --format markdown --out docs/claims.md \
        --cite README.md --cite docs/PAGE.md ...

A table the docs quote is replaced there too: every occurrence in docs/*.md of a committed
table as it was before this run becomes the new table, so the docs never quote a stale one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ABLATION = "ablations/inmodal_weight"
WEIGHT = "defense.params.inmodal_weight"
# The detection tables: (folder under --results, the `benchbd table` options that make them).
DETECTION_COLUMNS = {
    "digits": "detection_auroc,detection_ap,detection_tpr_at_1fpr,detection_poisons_removed,"
    "detection_clean_lost,after_ca,after_asr",
    "stages": "before_ca,before_asr,after_ca,after_asr,detection_auroc,detection_tpr_at_1fpr,"
    "detection_poisons_removed,detection_clean_lost",
    "input": "before_ca,before_asr,after_ca,after_asr,detection_auroc,detection_ap,"
    "detection_tpr_at_1fpr,detection_tpr_at_5fpr,detection_seconds_per_image",
}
DETECTION_COLUMNS["input-embedded"] = DETECTION_COLUMNS["input"]


def benchbd(*args: str) -> str:
    """A benchbd command's stdout; its warnings go to this script's stderr."""
    made = subprocess.run([sys.executable, "-m", "benchbd", *args], check=True, cwd=ROOT,
                          stdout=subprocess.PIPE, text=True)  # fmt: skip
    return made.stdout


def write(path: Path, text: str, old: dict[Path, str]) -> None:
    if path.exists():
        old[path] = path.read_text()
    path.write_text(text)
    print(f"wrote {path.relative_to(ROOT)}", flush=True)


def ablation(folder: Path, tolerance: str, old: dict[Path, str]) -> None:
    """ABLATION.md (rows in weight order, ranked as every table) and ablation.png."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from inmodal_ablation import plot

    from benchbd.reporting.leaderboard import load_folder, tabulate

    table = benchbd("table", str(folder), "--group-by", WEIGHT, "--format", "markdown",
                    "--ca-tolerance", tolerance)  # fmt: skip
    write(folder / "ABLATION.md", table, old)
    board = tabulate(load_folder(folder)[0], group_by=[WEIGHT], ca_tolerance=float(tolerance))
    rows = sorted(board.rows, key=lambda row: float(row.groups[0]))
    plot(rows, [float(row.groups[0]) for row in rows], folder / "ablation.png")


ZOO_TABLE = ("<!-- made by: benchbd table FOLDER --format markdown -->\n",
             "<!-- end of the table -->")


def zoo_readmes(results: Path) -> None:
    """Each zoo folder's README.md: its detector table, between the markers, made again."""
    start, end = ZOO_TABLE
    for readme in sorted(results.glob("*/README.md")):
        text = readme.read_text()
        if not (readme.parent / "manifest.json").exists() or start not in text:
            continue
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        table = benchbd("table", str(readme.parent), "--format", "markdown")
        readme.write_text(f"{head}{start}{table}{end}{tail}")
        print(f"wrote the table in {readme.relative_to(ROOT)}", flush=True)


def quoted(old: dict[Path, str], new: dict[Path, str]) -> None:
    """Replace, in docs/*.md, every quoted copy of a table as it was by the table as it is."""
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text()
        changed = text
        for path, before in old.items():
            if before.strip() and before.strip() != new[path].strip():
                changed = changed.replace(before.strip(), new[path].strip())
        if changed != text:
            page.write_text(changed)
            print(f"updated the tables quoted in {page.relative_to(ROOT)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--site", type=Path, default=ROOT / "docs" / "site")
    parser.add_argument("--ca-tolerance", default="0.05")
    args = parser.parse_args()
    from benchbd.reporting.report import result_folders

    results, tolerance = args.results.resolve(), args.ca_tolerance
    old: dict[Path, str] = {}
    for folder in result_folders(results):
        if folder == results / ABLATION:
            ablation(folder, tolerance, old)
            continue
        table = benchbd("table", str(folder), "--format", "markdown", "--ca-tolerance", tolerance)
        write(folder / "LEADERBOARD.md", table, old)
        benchbd("plot", str(folder), "--out", str(folder / "leaderboard.png"), "--ca-tolerance",
                tolerance)  # fmt: skip
    for name, columns in DETECTION_COLUMNS.items():
        folder = results / name
        table = benchbd("table", str(folder), "--columns", columns, "--sort", "detection_auroc",
                        "--format", "markdown", "--ca-tolerance", tolerance)  # fmt: skip
        write(folder / "DETECTION.md", table, old)
    curves = benchbd("table", str(results / "objective"), "--curves", "--format", "markdown")
    write(results / "objective" / "CURVES.md", curves, old)
    quoted(old, {path: path.read_text() for path in old})
    zoo_readmes(results)
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    cites = [arg for page in pages if page.name != "claims.md" for arg in ("--cite", str(page))]
    benchbd("claims", str(results / "claims.toml"), "--format", "markdown",
            "--out", str(ROOT / "docs" / "claims.md"), *cites)  # fmt: skip
    print(benchbd("report", str(results), "--out", str(args.site), "--all", "--no-triggers",
                  "--ca-tolerance", tolerance), end="")  # fmt: skip


if __name__ == "__main__":
    main()
