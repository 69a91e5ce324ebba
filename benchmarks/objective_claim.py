"""The pretraining-objective claim, measured: does CleanCLIP fail when the poisoned model was
pretrained with the CLIP loss plus in-modal terms (Verma et al., "Effective Backdoor Mitigation
Depends on the Pre-training Objective")?

Reads the result files of `results/objective/` (see its grid.toml: blended and badnet,
CleanCLIP swept over its learning rate, pretrained with the CLIP loss alone and with
`--inmodal-weight 1` or 2) and prints, per attack and objective, the poisoned model, each point
of the CleanCLIP curve (the default learning rate marked), the best CA at ASR <= 0.05 and the
Pareto area. Then, for every in-modal curve against the CLIP-only curve of the same attack, the
claim in the two forms the benchmark states it:

- ASR ratio: CleanCLIP's ASR at the default recipe with in-modal pretraining over its ASR
  with CLIP-only pretraining (the claim holds at >= 3);
- CA-cost ratio: the smallest clean-accuracy drop (poisoned CA minus defended CA) at which a
  point of each curve reaches the ASR CleanCLIP reaches at the default recipe on the CLIP-only
  model (at least 0.05), in-modal over CLIP-only (the claim holds at >= 3; a drop below 0.01
  counts as 0.01, so a free defense is not a division by zero). Infinite when the in-modal
  curve never gets there.

The claim holds for a comparison when either ratio is >= 3; the last line says for how many.

    python benchmarks/objective_claim.py [results/objective] [--default-lr 5e-4]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from benchbd.reporting.curves import best_ca_at_asr, curves, pareto_area
from benchbd.reporting.leaderboard import load_folder

WEIGHT = "pretrain.inmodal_weight"
COST_FLOOR = 0.01  # CA drops below this count as this much
CLIP_ONLY = "CLIP only"


def objective_of(curve) -> str:
    """'CLIP + in-modal (w=1)' or 'CLIP only', from the curve's context."""
    weight = curve.context.get(WEIGHT, "0")
    try:
        inmodal = float(weight) > 0
    except ValueError:
        inmodal = False
    return f"CLIP + in-modal (w={weight})" if inmodal else CLIP_ONLY


def cheapest_drop(curve, asr: float) -> float:
    """The smallest CA drop among points at ASR <= `asr`; inf when none gets there."""
    before_ca = curve.before[1]
    drops = [before_ca - p.ca for p in curve.points if p.asr <= asr]
    return max(min(drops), COST_FLOOR) if drops else math.inf


def describe(name: str, curve, default_lr: float):
    """Print one curve; return its point at the default learning rate (None if not run)."""
    before_asr, before_ca = curve.before
    print(f"{curve.attack}, {name}: poisoned CA {before_ca:.3f} ASR {before_asr:.3f}")
    default = None
    for point in curve.points:
        mark = ""
        if math.isclose(point.strength.get("lr") or default_lr, default_lr):
            default, mark = point, "  <- default recipe"
        print(
            f"  cleanclip {point.label():12s} CA {point.ca:.3f} ± {point.ca_std:.3f}  "
            f"ASR {point.asr:.3f} ± {point.asr_std:.3f}  ({point.seeds} seeds){mark}"
        )
    print(
        f"  best CA at ASR <= 0.05: {best_ca_at_asr(curve.points):.3f}; "
        f"Pareto area {pareto_area(curve.points):.3f}"
    )
    return default


def compare(attack: str, name: str, clip, inmodal, clip_default, inmodal_default) -> bool:
    """Print both forms of the claim for one in-modal curve against the CLIP-only one."""
    print(f"{attack}: {name} against {CLIP_ONLY}")
    if clip_default is None or inmodal_default is None:
        print("  a curve lacks the default learning rate: the ASR ratio cannot be taken")
        ratio = math.nan
    else:
        ratio = inmodal_default.asr / max(clip_default.asr, 1e-9)
        print(
            f"  ASR ratio at the default recipe: {inmodal_default.asr:.3f} / "
            f"{clip_default.asr:.3f} = {ratio:.2f}x (claim: >= 3x)"
        )
    level = max(clip_default.asr if clip_default else 0.0, 0.05)
    cost_clip, cost_inmodal = cheapest_drop(clip, level), cheapest_drop(inmodal, level)
    print(
        f"  CA drop to reach ASR <= {level:.3f}: {CLIP_ONLY} {cost_clip:.3f}, "
        f"{name} {cost_inmodal:.3f}: {cost_inmodal / cost_clip:.2f}x (claim: >= 3x)"
    )
    holds = ratio >= 3 or cost_inmodal / cost_clip >= 3
    print(f"  the claim {'holds' if holds else 'does not hold'} here")
    return holds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="results/objective", type=Path)
    parser.add_argument("--default-lr", type=float, default=5e-4)
    args = parser.parse_args()
    results, warnings = load_folder(args.folder)
    for warning in warnings:
        print(f"warning: {warning}")
    by_attack: dict[str, dict[str, object]] = {}
    for curve in curves(results):
        if curve.defense == "cleanclip":
            by_attack.setdefault(curve.attack, {})[objective_of(curve)] = curve
    comparisons = held = 0
    for attack, found in sorted(by_attack.items()):
        if CLIP_ONLY not in found or len(found) < 2:
            print(f"{attack}: skipped, it needs a CLIP-only and an in-modal curve "
                  f"(found {sorted(found)})")  # fmt: skip
            continue
        defaults = {name: describe(name, c, args.default_lr) for name, c in sorted(found.items())}
        for name in sorted(found):
            if name != CLIP_ONLY:
                comparisons += 1
                held += compare(attack, name, found[CLIP_ONLY], found[name],
                                defaults[CLIP_ONLY], defaults[name])  # fmt: skip
    if not comparisons:
        raise SystemExit(f"no attack in {args.folder} has a CLIP-only and an in-modal curve")
    print(f"the pretraining-objective claim holds in {held} of {comparisons} comparisons")


if __name__ == "__main__":
    main()
