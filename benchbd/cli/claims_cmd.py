"""`benchbd claims [FILE]`: every claim of a claim file, decided from the results it reads."""

from __future__ import annotations

from pathlib import Path

import typer

from benchbd.cli.errors import friendly_errors
from benchbd.core.cache import atomic_write_text
from benchbd.reporting.citations import refresh
from benchbd.reporting.claim_writers import FORMATS, HEADERS, cells, render
from benchbd.reporting.claims import NO_RESULTS, decide_all, read_claims


@friendly_errors
def claims(
    file: Path = typer.Argument(
        Path("results/claims.toml"),
        help="claim file (TOML), or a folder holding claims.toml",
        readable=False,
    ),  # benchbd says what is wrong with the file, in one line
    format: str = typer.Option("rich", "--format", "-f", help="rich|markdown|csv|json"),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="write the table to this file (atomically) instead of stdout"
    ),
    strict: bool = typer.Option(
        False, "--strict", help="exit 1 when a claim reads no results (a missing or renamed run)"
    ),
    cite: list[Path] = typer.Option(
        [], "--cite", help="rewrite the claim citations in this markdown page (repeatable)"
    ),
) -> None:
    """Decide each claim: its per-seed values, mean, n and 95 % interval, and the verdict
    (holds / fails / inconclusive) read from the interval; "no results" for a claim that reads
    none. Folders in the file are relative to the current directory."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    if out is not None and format == "rich":
        raise ValueError("--out writes markdown, csv or json: add --format")
    decisions = decide_all(read_claims(file))
    if cite:
        rewrite_citations(cite, {d.claim.id: d.citation() for d in decisions})
    if out is not None:
        atomic_write_text(out, render(decisions, format))
        typer.echo(f"claims: {out} ({len(decisions)} claims)")
    elif format != "rich":
        typer.echo(render(decisions, format), nl=False)
    else:
        from rich.console import Console
        from rich.table import Table

        view = Table(title=f"benchbd claims: {file} ({len(decisions)} claims)")
        for header in HEADERS:
            view.add_column(header, justify="right" if header in ("n", "mean [95 % interval]")
                            else "left")  # fmt: skip
        styles = {"holds": "green", "fails": "red", NO_RESULTS: "dim"}
        for decision in decisions:
            view.add_row(*cells(decision), style=styles.get(decision.verdict))
        Console().print(view)
    missing = [d.claim.id for d in decisions if d.verdict == NO_RESULTS]
    if missing:
        typer.echo(f"benchbd: warning: {len(missing)} claim(s) read no results: "
                   f"{', '.join(missing)}", err=True)  # fmt: skip
        if strict:
            raise typer.Exit(1)


def rewrite_citations(pages: list[Path], citations: dict[str, str]) -> None:
    """Every citation in `pages` as the claims now decide it (atomically, page by page); a
    citation of a claim the file does not have is an error naming the page, before any page
    is written."""
    rewritten = {}
    for page in pages:
        if not page.is_file():
            raise ValueError(f"--cite {page}: no such file")
        text, changed, unknown = refresh(page.read_text(), citations)
        if unknown:
            raise ValueError(f"--cite {page}: cites claims the file does not have: "
                             f"{', '.join(sorted(set(unknown)))}")  # fmt: skip
        rewritten[page] = (text, changed)
    for page, (text, changed) in rewritten.items():
        if changed:
            atomic_write_text(page, text)
        typer.echo(f"claims: {page}: {len(set(changed))} citation(s) rewritten", err=True)
