"""Reading a results folder for a command: warnings to stderr, filters applied."""

from __future__ import annotations

from pathlib import Path

import typer

from benchbd.leaderboard import apply_filters, load_folder, parse_filters


def read_results(folder: Path, filters: list[str]) -> list[dict]:
    """The folder's results that match every FIELD=VALUE filter; unreadable files are named
    on stderr and skipped; no match at all is an error."""
    results, warnings = load_folder(folder)
    for warning in warnings:
        typer.echo(f"benchbd: warning: {warning}", err=True)
    results = apply_filters(results, parse_filters(filters))
    if not results:
        raise ValueError(f"no result in {str(folder)!r} matches the filters")
    return results
