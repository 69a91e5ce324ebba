"""Reading a results folder for a command: filters applied, warnings kept for the end."""

from __future__ import annotations

from pathlib import Path

import typer

from benchbd.reporting.ranking import DEFAULT_CA_TOLERANCE, check_tolerance
from benchbd.reporting.result_frame import apply_filters, load_folder, parse_filters


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


CA_TOLERANCE_HELP = (
    "the largest mean CA drop over seeds (before - after, on the classifier after uses) of a "
    "row that may rank; rows beyond it, or with an untrained seed, are listed after the "
    "ranked ones with the reason (a number in [0, 1]; default 0.05; README 'How results are "
    "ranked')"
)


def ca_tolerance(text: str | None) -> float:
    """`--ca-tolerance`, read as text so that a value that is no number gets benchbd's own
    one-line error."""
    return DEFAULT_CA_TOLERANCE if text is None else check_tolerance(_number(text))


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text
