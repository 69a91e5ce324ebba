"""A zoo's detector table as text: the cells `benchbd table ZOO_DIR` and the site's zoo page
show, written by the one table writer (benchbd.reporting.table_writers) for markdown, HTML
and LaTeX, as CSV and JSON with the numbers as numbers.

The columns are those a reader comparing model detectors asks for, in the order of the table
a zoo's README gave by hand: how well scores separate poisoned from clean models on the test
part (AUROC, with its score interval: 4 + 4 test models leave a wide one) and on every
model, what the threshold fixed on the validation part does on the test part (F1, TPR, FPR),
whether the detector names the attack's target, and what a model costs to screen.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from benchbd.reporting.table_writers import check_format, write_csv, write_text
from benchbd.reporting.zoo_claims import DECIDING_MODELS

if TYPE_CHECKING:
    import pandas as pd

ZOO_FORMATS = ("rich", "markdown", "csv", "json", "latex", "html")
HEADERS = ["detector", "test models (poisoned / clean)", "AUROC (test part) [95 % interval]",
           "AUROC (all models)", "F1 at the validation threshold", "TPR / FPR",
           "target accuracy (test / all)", "seconds per model"]  # fmt: skip
NOTE = (
    "AUROC: poisoned models positive; its 95 % interval is Newcombe's score interval over the "
    "test models (it stays wide on a small zoo even when the scores separate perfectly). The "
    "threshold is fixed on the validation part; F1, TPR and FPR are the test part's. Target "
    "accuracy: the share of poisoned models whose named target is the attack's. Best test "
    f"AUROC in bold. A zoo claim is decided only on {DECIDING_MODELS} poisoned and "
    f"{DECIDING_MODELS} clean test models or more."
)


def _fixed(value: float, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _auroc(row) -> str:
    text = _fixed(row["auroc"], 3)
    if text == "-" or math.isnan(row["auroc_low"]) or math.isnan(row["auroc_high"]):
        return text
    return f"{text} [{row['auroc_low']:.3f}, {row['auroc_high']:.3f}]"


def _f1(row) -> str:
    text = _fixed(row["f1"], 3)
    threshold = row["threshold"]
    if math.isnan(threshold):
        return text
    plain = threshold == 0 or 0.01 <= abs(threshold) < 1000  # else too small or large for .3f
    return f"{text} (threshold {threshold:.3f})" if plain else f"{text} (threshold {threshold:.3g})"


def texts(frame: pd.DataFrame) -> list[list[str]]:
    """Each detector's cells, in HEADERS order."""
    lines = []
    for _, row in frame.iterrows():
        lines.append([
            str(row["detector"]),
            f"{row['test_poisoned']} / {row['test_clean']}",
            _auroc(row),
            _fixed(row["auroc_all"], 3) + f" (n={row['models']})",
            _f1(row),
            f"{_fixed(row['tpr'], 2)} / {_fixed(row['fpr'], 2)}",
            f"{_fixed(row['target_accuracy'], 2)} / {_fixed(row['target_accuracy_all'], 2)}",
            _fixed(row["seconds_per_model"], 1),
        ])  # fmt: skip
    return lines


def best(frame: pd.DataFrame) -> list[bool]:
    """The detectors with the highest test AUROC (all of them when tied)."""
    top = frame["auroc"].max()
    return [bool(not math.isnan(top) and value == top) for value in frame["auroc"]]


def note(split_rule: str) -> str:
    return f"{NOTE} Split rule: {split_rule}." if split_rule else NOTE


def _plain(value: Any) -> Any:
    """A frame's cell as JSON writes it: numpy numbers as Python's (every digit kept), NaN as
    null."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value


def render(frame: pd.DataFrame, fmt: str, split_rule: str = "") -> str:
    """The table in `fmt`: markdown, HTML and LaTeX from the cell texts (with the note), CSV
    and JSON with a column per number (json: one record per detector, NaN as null)."""
    check_format(fmt, ZOO_FORMATS)
    if fmt == "csv":
        return write_csv(frame, float_format=None)
    if fmt == "json":
        return (
            json.dumps(
                [
                    {key: _plain(value) for key, value in record.items()}
                    for record in frame.to_dict(orient="records")
                ],
                indent=1,
            )
            + "\n"
        )
    return write_text(fmt, HEADERS, texts(frame), best(frame), len(HEADERS) - 2,
                      note(split_rule))  # fmt: skip
