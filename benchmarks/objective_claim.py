"""The pretraining-objective claim, measured: does CleanCLIP fail when the poisoned model was
pretrained with the CLIP loss plus in-modal terms (Verma et al., "Effective Backdoor Mitigation
Depends on the Pre-training Objective")?

Reads the result files of `results/objective/grid.toml` (blended; CleanCLIP swept over its
learning rate; run once with the CLIP loss alone and once with `--inmodal-weight 1`) and prints,
per objective, the poisoned model, CleanCLIP at its default learning rate, each point of the
curve, the best CA at ASR <= 0.05 and the Pareto area. Then the claim in the two forms the
benchmark states it:

- ASR ratio: CleanCLIP's ASR at the default recipe with in-modal pretraining over its ASR
  with CLIP-only pretraining (the claim holds at >= 3);
- CA-cost ratio: the smallest clean-accuracy drop (poisoned CA minus defended CA) at which a
  point of each curve reaches the ASR CleanCLIP reaches at the default recipe on the CLIP-only
  model (at least 0.05), in-modal over CLIP-only (the claim holds at >= 3; a drop below 0.01
  counts as 0.01, so a free defense is not a division by zero). Infinite when the in-modal
  curve never gets there.

    python benchmarks/objective_claim.py [results/objective] [--default-lr 5e-4]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from benchbd.curves import best_ca_at_asr, curves, pareto_area
from benchbd.leaderboard import load_folder

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="results/objective", type=Path)
    parser.add_argument("--default-lr", type=float, default=5e-4)
    args = parser.parse_args()
    results, warnings = load_folder(args.folder)
    for warning in warnings:
        print(f"warning: {warning}")
    found = {objective_of(c): c for c in curves(results) if c.defense == "cleanclip"}
    if len(found) != 2 or CLIP_ONLY not in found:
        raise SystemExit(f"expected a cleanclip curve per objective, found {sorted(found)}")
    at_default = {}
    for name, curve in sorted(found.items()):
        before_asr, before_ca = curve.before
        print(f"{name}: poisoned CA {before_ca:.3f} ASR {before_asr:.3f}")
        for point in curve.points:
            mark = ""
            if math.isclose(point.strength.get("lr") or args.default_lr, args.default_lr):
                at_default[name] = point
                mark = "  <- default recipe"
            print(
                f"  cleanclip {point.label():12s} CA {point.ca:.3f} ± {point.ca_std:.3f}  "
                f"ASR {point.asr:.3f} ± {point.asr_std:.3f}  ({point.seeds} seeds){mark}"
            )
        print(
            f"  best CA at ASR <= 0.05: {best_ca_at_asr(curve.points):.3f}; "
            f"Pareto area {pareto_area(curve.points):.3f}"
        )
    inmodal_name = next(name for name in found if name != CLIP_ONLY)
    clip, inmodal = found[CLIP_ONLY], found[inmodal_name]
    asr_clip, asr_inmodal = at_default[CLIP_ONLY].asr, at_default[inmodal_name].asr
    ratio = asr_inmodal / max(asr_clip, 1e-9)
    print(
        f"ASR ratio at the default recipe: {asr_inmodal:.3f} / {asr_clip:.3f} = "
        f"{ratio:.2f}x (claim: >= 3x)"
    )
    level = max(asr_clip, 0.05)
    cost_clip, cost_inmodal = cheapest_drop(clip, level), cheapest_drop(inmodal, level)
    print(
        f"CA drop to reach ASR <= {level:.3f}: CLIP only {cost_clip:.3f}, "
        f"{inmodal_name} {cost_inmodal:.3f}: {cost_inmodal / cost_clip:.2f}x (claim: >= 3x)"
    )
    holds = ratio >= 3 or cost_inmodal / cost_clip >= 3
    print(f"the pretraining-objective claim {'holds' if holds else 'does not hold'} here")


if __name__ == "__main__":
    main()
