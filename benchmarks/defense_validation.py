"""Choose defense settings without looking at the test split.

The embedded data's validation split: the same distribution, disjoint from every image the
benchmark trains on or reports on (`benchbd run --split validation` measures on it too). For
each seed this script loads the cached poisoned model (training it once if needed), applies the
defense with the given parameters, and prints CA and ASR on the validation images.

    python benchmarks/defense_validation.py --attack blended --defense cleanclip \
        --seeds 0,1,2 [--param epochs=10 --param inmodal_weight=2]
"""

from __future__ import annotations

import argparse
import statistics

from benchbd.core.params import build, parse_assignments
from benchbd.core.seeds import substream
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data
from benchbd.engine.evaluate import evaluate
from benchbd.engine.plugins import DefenseContext, defenses
from benchbd.engine.poisoned_model import load_poisoned
from benchbd.engine.run_config import RunConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attack", default="blended")
    parser.add_argument("--defense", default="cleanclip")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--param", action="append", default=[], help="defense name=value")
    args = parser.parse_args()
    defense_params = parse_assignments(args.param)
    data = load_data("synthetic", DataSizes(), image_size=32)
    validation = data.validation
    cls = defenses.get(args.defense)
    params = build(cls.Params, defense_params, owner=args.defense)
    label = ",".join(args.param) or "defaults"
    cas, asrs = [], []
    for seed in (int(s) for s in args.seeds.split(",")):
        config = RunConfig(attack=args.attack, defense=args.defense, seed=seed)
        clip, attack = load_poisoned(config, data)
        target, eval_seed = attack.setup.target, substream(seed, "evaluate")
        before = evaluate(clip, validation, data.task, target, attack.apply_trigger, eval_seed)
        context = DefenseContext(data.clean, data.task, substream(seed, "defense"))
        defended = cls(params).apply(clip, context)
        after = evaluate(defended, validation, data.task, target, attack.apply_trigger,
                         eval_seed)  # fmt: skip
        cas.append(after.ca)
        asrs.append(after.asr)
        print(f"{args.attack} {args.defense} [{label}] seed {seed}: validation CA "
              f"{before.ca:.3f} -> {after.ca:.3f}, ASR {before.asr:.3f} -> {after.asr:.3f}",
              flush=True)  # fmt: skip
    if len(asrs) > 1:
        print(f"{args.attack} {args.defense} [{label}] mean: CA {statistics.fmean(cas):.3f}, "
              f"ASR {statistics.fmean(asrs):.3f} ± {statistics.stdev(asrs):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
