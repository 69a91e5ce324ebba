"""Reading a results folder for a command: filters applied, warnings kept for the end."""

from __future__ import annotations

from pathlib import Path

import typer

from benchbd.result_frame import apply_filters, load_folder, parse_filters


def read_results(folder: Path, filters: list[str]) -> tuple[list[dict], list[str]]:
    """The folder's results that match every FIELD=VALUE filter, and one warning per file
    skipped; no match at all is an error. The command prints the warnings once it knows it
    will succeed, so a mistake is still one line."""
    results, warnings = load_folder(folder)
    results = apply_filters(results, parse_filters(filters))
    if not results:
        raise ValueError(f"no result in {str(folder)!r} matches the filters")
    return results, warnings


def warn(lines: list[str]) -> None:
    for line in lines:
        typer.echo(f"benchbd: warning: {line}", err=True)
