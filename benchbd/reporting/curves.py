"""Trade-off curves: a defense at several strengths, as points of ASR against CA.

One operating point hides a defense's trade-off: pushed harder (a higher learning rate, more
epochs, a larger loss weight) it removes more of the backdoor and more of the clean accuracy.
Results of one experiment that differ only in the defense's parameters (`defense.params.*`,
see reporting.experiments) are the points of one curve for their (attack, defense); each point
is the mean over seeds of `after_ca` and `after_asr` at one strength, the newest file per
seed counting once, as in the leaderboard. Non-finite values are left out of the means; a
point with no finite CA or ASR (a baseline attack has no ASR) is not a point.

A curve's Pareto front is its points that no other point dominates (another point with ASR
<= and CA >= and one of them strict). Two numbers summarise a curve (docs/curves.md):

- `best_ca_at_asr`: the highest mean CA among points with mean ASR <= a threshold (0.05 by
  default), NaN when no point gets there;
- `pareto_area`: the area under t -> best CA among points with ASR <= t, for t in [0, 1]
  (0 where no point has ASR <= t): 1.0 is a point with CA 1 at ASR 0; higher is better.

Computed with pandas, which is imported on first use.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchbd.core.errors import BenchbdError
from benchbd.core.results import is_baseline
from benchbd.reporting.experiments import (
    experiment_key,
    newest_per_seed,
    settings,
    split_columns,
    varying,
)
from benchbd.reporting.table_writers import check_format, write_csv, write_text

if TYPE_CHECKING:
    import pandas as pd

PARAMS = "defense.params."  # the settings a curve runs over
ASR_THRESHOLD = 0.05  # best_ca_at_asr: "the backdoor is gone"


@dataclass(frozen=True)
class Point:
    """One strength of a defense: its varying parameters' values (None where a result does
    not record the parameter) and the means over seeds."""

    strength: dict[str, Any]
    ca: float
    asr: float
    seeds: int
    ca_std: float = 0.0
    asr_std: float = 0.0

    def label(self) -> str:
        """'lr=1e-05', 'lr=1e-05, epochs=2'; 'default' for a point of no varying parameter."""
        return ", ".join(f"{k}={_short(v)}" for k, v in self.strength.items()) or "default"


@dataclass(frozen=True)
class Curve:
    """The points of one (attack, defense) in one experiment, ordered by strength.
    `context` holds the other settings (dotted path -> value text) that tell this curve
    apart from other curves of the same attack, such as a poison rate; `before` is the
    undefended poisoned model, (ASR, CA) averaged over the curve's results."""

    attack: str
    defense: str
    parameters: tuple[str, ...]
    points: list[Point]
    before: tuple[float, float] | None
    context: dict[str, str] = field(default_factory=dict)
    baseline: bool = False

    def front(self) -> list[Point]:
        return pareto_front(self.points)

    def strengths(self) -> str:
        """The strength values covered, as a table cell: 'lr: 1e-05, 0.0001, 0.001'."""
        if not self.parameters:
            return "-"
        return "; ".join(f"{name}: " + ", ".join(dict.fromkeys(_short(p.strength[name])
                                                                for p in self.points))
                         for name in self.parameters)  # fmt: skip


def _short(value: Any) -> str:
    if value is None:
        return "default"
    return format(value, "g") if isinstance(value, float) else str(value)


def _order(value: Any) -> tuple[int, float, str]:
    """Strength values sort as numbers when they are numbers; unrecorded ones first."""
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0.0, str(value))


# --- the front and its summaries ---------------------------------------------------------


def _frame(points: Sequence[Point]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({"asr": [p.asr for p in points], "ca": [p.ca for p in points]},
                        dtype=float)  # fmt: skip


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The points no other point dominates, by ASR from low to high (CA rises along it).
    Equal points are both on the front: neither is strictly better."""
    if not points:
        return []
    frame = _frame(points)
    asr, ca = frame["asr"].to_numpy(), frame["ca"].to_numpy()
    no_worse = (asr[None, :] <= asr[:, None]) & (ca[None, :] >= ca[:, None])
    better = (asr[None, :] < asr[:, None]) | (ca[None, :] > ca[:, None])
    dominated = (no_worse & better).any(axis=1)  # row i: some point j dominates it
    kept = frame[~dominated].sort_values(["asr", "ca"], ascending=[True, False], kind="stable")
    return [points[i] for i in kept.index]


def check_threshold(threshold: float) -> float:
    if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise BenchbdError(f"--asr-threshold must be a number in [0, 1], got {threshold}")
    return float(threshold)


def best_ca_at_asr(points: Sequence[Point], threshold: float = ASR_THRESHOLD) -> float:
    """The highest mean CA among the points with mean ASR <= `threshold`; NaN if none."""
    threshold = check_threshold(threshold)
    frame = _frame(points)
    reached = frame.loc[frame["asr"] <= threshold, "ca"]
    return float(reached.max()) if not reached.empty else math.nan


def pareto_area(points: Sequence[Point]) -> float:
    """The area under the front's step function t -> max CA over points with ASR <= t, for t
    in [0, 1]: each point's CA (running maximum by ASR) times the ASR span until the next."""
    if not points:
        return math.nan
    frame = _frame(points).sort_values("asr", kind="stable")
    best = frame["ca"].cummax().to_numpy()
    start = frame["asr"].clip(0.0, 1.0).to_numpy()
    end = [*start[1:], 1.0]
    return float(sum(b * (e - s) for b, s, e in zip(best, start, end, strict=True)))


# --- building curves ---------------------------------------------------------------------


def _number(result: Mapping[str, Any], when: str, name: str) -> float:
    value = ((result.get("metrics") or {}).get(when) or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value) if math.isfinite(value) else math.nan


def curves(results: Sequence[Mapping[str, Any]]) -> list[Curve]:
    """Every (attack, defense) curve in `results`, by attack, context and defense: results
    whose recorded settings differ only under defense.params are one curve; each distinct
    parameter setting is a point."""
    import pandas as pd

    flats = [settings(r) for r in results]
    keys = [experiment_key(flat) for flat in flats]
    kept = newest_per_seed(results, keys)
    lines = [experiment_key({p: v for p, v in flats[i].items() if not p.startswith(PARAMS)})
             for i in kept]  # fmt: skip
    line_id = {key: n for n, key in enumerate(dict.fromkeys(lines))}
    experiment_id = {key: n for n, key in enumerate(dict.fromkeys(keys[i] for i in kept))}
    frame = pd.DataFrame({
        "curve": [line_id[key] for key in lines],
        "experiment": [experiment_id[keys[i]] for i in kept],
        "seed": [results[i].get("seed") for i in kept],
        "ca": [_number(results[i], "after", "ca") for i in kept],
        "asr": [_number(results[i], "after", "asr") for i in kept],
        "before_ca": [_number(results[i], "before", "ca") for i in kept],
        "before_asr": [_number(results[i], "before", "asr") for i in kept],
        "baseline": [is_baseline(results[i]["defense"]) for i in kept],
        "first": kept,
    })  # fmt: skip
    if frame.empty:
        return []
    points = frame.groupby(["curve", "experiment"], sort=False).agg(
        ca=("ca", "mean"), asr=("asr", "mean"), ca_std=("ca", "std"), asr_std=("asr", "std"),
        seeds=("seed", "nunique"), first=("first", "first"),
    )  # fmt: skip
    per_curve = frame.groupby("curve", sort=False).agg(
        before_ca=("before_ca", "mean"), before_asr=("before_asr", "mean"),
        baseline=("baseline", "any"), first=("first", "first"),
    )  # fmt: skip
    made: list[tuple[Curve, dict[str, str]]] = []
    for curve, line in per_curve.iterrows():
        rows = points.loc[curve]
        experiments = [flats[i] for i in rows["first"]]
        parameters = sorted(p for p in varying([experiments]) if p.startswith(PARAMS))
        drawn = []
        for flat, row in zip(experiments, rows.itertuples(), strict=True):
            if math.isnan(row.ca) or math.isnan(row.asr):
                continue
            strength = {p.removeprefix(PARAMS): json.loads(flat[p]) if p in flat else None
                        for p in parameters}  # fmt: skip
            drawn.append(Point(strength, row.ca, row.asr, int(row.seeds),
                               _std(row.ca_std), _std(row.asr_std)))  # fmt: skip
        if not drawn:
            continue
        drawn.sort(key=lambda p: tuple(_order(v) for v in p.strength.values()))
        before = (line["before_asr"], line["before_ca"])
        first = int(line["first"])
        made.append((Curve(
            attack=results[first]["attack"]["name"], defense=results[first]["defense"]["name"],
            parameters=tuple(p.removeprefix(PARAMS) for p in parameters), points=drawn,
            before=None if any(map(math.isnan, before)) else before,
            baseline=bool(line["baseline"]),
        ), {p: v for p, v in flats[first].items() if not p.startswith(PARAMS)}))  # fmt: skip
    return _with_context(made)


def _std(value: float) -> float:
    return 0.0 if math.isnan(value) else float(value)


def _with_context(made: list[tuple[Curve, dict[str, str]]]) -> list[Curve]:
    """Each curve (given with its settings less the defense's parameters) with its context:
    the settings that differ between the curves of its attack, less those that only follow
    the defense (its name, its package); sorted by attack, context, defense."""
    by_attack: dict[str, list[tuple[Curve, dict[str, str]]]] = defaultdict(list)
    for curve, flat in made:
        by_attack[curve.attack].append((curve, flat))
    out = []
    for attack in sorted(by_attack):
        group = [curve for curve, _ in by_attack[attack]]
        flats = [flat for _, flat in by_attack[attack]]
        by_defense: dict[str, list[dict[str, str]]] = defaultdict(list)
        for curve, flat in zip(group, flats, strict=True):
            by_defense[curve.defense].append(flat)
        poisoned = [[{p: v for p, v in f.items() if not p.startswith("defense.")}
                     for f in flats]]  # fmt: skip
        differ = varying(poisoned) | varying(by_defense.values())
        shown = split_columns(differ, flats)
        for curve, flat in zip(group, flats, strict=True):
            context = {path: _value_text(flat.get(path)) for path in shown}
            out.append(Curve(curve.attack, curve.defense, curve.parameters, curve.points,
                             curve.before, context, curve.baseline))  # fmt: skip
    out.sort(key=lambda c: (c.attack, tuple(c.context.items()), c.defense))
    return out


def _value_text(text: str | None) -> str:
    """A setting's canonical JSON text as a reader writes it (0.03, synthetic, 5)."""
    if text is None:
        return "-"
    value = json.loads(text)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return _short(value)


def has_curves(found: Sequence[Curve]) -> bool:
    """Whether any curve has two points or more: something a single point would hide."""
    return any(len(c.points) > 1 for c in found)


# --- the table ---------------------------------------------------------------------------


def curve_frame(found: Sequence[Curve], threshold: float = ASR_THRESHOLD) -> pd.DataFrame:
    """One row per curve: its context, attack, defense, parameters, the strength values
    covered, number of points, the front's size, `best_ca_at_asr` and `pareto_area`; `best`
    marks the curve of the highest area per attack and context (never a baseline)."""
    import pandas as pd

    threshold = check_threshold(threshold)
    contexts = list(dict.fromkeys(path for c in found for path in c.context))
    records = [{**{path: c.context.get(path, "-") for path in contexts},
                "attack": c.attack, "defense": c.defense,
                "parameters": ", ".join(c.parameters) or "-", "strengths": c.strengths(),
                "points": len(c.points), "front": len(c.front()),
                "best_ca_at_asr": best_ca_at_asr(c.points, threshold),
                "pareto_area": pareto_area(c.points), "baseline": c.baseline}
               for c in found]  # fmt: skip
    columns = [*contexts, "attack", "defense", "parameters", "strengths", "points", "front",
               "best_ca_at_asr", "pareto_area", "baseline"]  # fmt: skip
    frame = pd.DataFrame(records, columns=columns)
    eligible = frame[~frame["baseline"].astype(bool)].sort_values("pareto_area", ascending=False,
                                                                  kind="stable")  # fmt: skip
    winners = eligible.drop_duplicates(subset=[*contexts, "attack"]).index
    return frame.assign(best=frame.index.isin(winners)).drop(columns="baseline")


def headers(frame: pd.DataFrame, threshold: float = ASR_THRESHOLD) -> list[str]:
    names = {"best_ca_at_asr": f"best CA at ASR<={threshold:g}", "pareto_area": "Pareto area"}
    return [names.get(c, c) for c in frame.columns if c != "best"]


def texts(frame: pd.DataFrame) -> list[list[str]]:
    """Each row's cells as a table shows them: numbers to 3 decimals, NaN as 'nan'."""
    out = []
    for row in frame.drop(columns="best").to_dict("records"):
        out.append([f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()])
    return out


def render(frame: pd.DataFrame, fmt: str, threshold: float = ASR_THRESHOLD) -> str:
    """Markdown, CSV (numbers as numbers, `best` 1 or 0), LaTeX or HTML, by the one table
    writer (reporting.table_writers) as the leaderboard's tables are; the best curve of each
    attack in bold."""
    check_format(fmt)
    if fmt == "csv":
        return write_csv(frame.assign(best=frame["best"].astype(int)))
    heads, lines, best = headers(frame, threshold), texts(frame), frame["best"].tolist()
    return write_text(fmt, heads, lines, best, 3)
