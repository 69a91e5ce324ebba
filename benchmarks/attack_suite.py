"""Every attack's figures on the embedded data: poisoning time for 20,000 pairs, and the
poisoned model's CA and ASR per seed (default budget, default parameters).

    python benchmarks/attack_suite.py [--attacks badnet,blended,wanet,label_consistent]
                                      [--seeds 0,1,2] [--param attack:name=value ...]
                                      [--split validation]

It measures on the validation split unless told otherwise: a script for trying settings must
not look at the test split, which is for reporting (the reference grid reports the attacks on
test). Poisoned models land in the normal cache ($BENCHBD_CACHE), so later runs reuse them.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchbd.core.params import parse_assignments
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data
from benchbd.engine.pipeline import run
from benchbd.engine.planning import build_attack
from benchbd.engine.run_config import RunConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attacks", default="badnet,blended,wanet,label_consistent")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--param", action="append", default=[],
                        help="ATTACK:name=value, e.g. label_consistent:harden=true")  # fmt: skip
    parser.add_argument("--label", default="", help="suffix for the attack's row name")
    parser.add_argument("--split", default="validation", choices=("validation", "test"))
    args = parser.parse_args()
    names = args.attacks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides: dict[str, list[str]] = {}
    for item in args.param:
        attack, _, assignment = item.partition(":")
        overrides.setdefault(attack, []).append(assignment)

    data = load_data("synthetic", DataSizes(), image_size=32)
    print(f"on the {args.split} split")
    print("attack                      poison 20k pairs   seed   CA      ASR     RA")
    for name in names:
        params = parse_assignments(overrides.get(name, []))
        config = RunConfig(attack=name, defense="none", attack_params=params)
        attack = build_attack(config, data)
        if not getattr(attack.params, "harden", False):
            start = time.perf_counter()
            attack.poison(data.train)
            poison_s = f"{time.perf_counter() - start:6.2f} s"
        else:
            poison_s = "(with PGD)"
        cas, asrs = [], []
        for seed in seeds:
            config = RunConfig(attack=name, defense="none", attack_params=params, seed=seed,
                               split=args.split)  # fmt: skip
            result = run(config)
            before = result.metrics["before"]
            cas.append(before["ca"])
            asrs.append(before["asr"])
            label = name + args.label
            print(f"{label:27s} {poison_s:>16s}   {seed:4d}   {before['ca']:.3f}   "
                  f"{before['asr']:.3f}   {before['ra']:.3f}", flush=True)  # fmt: skip
        if len(seeds) > 1:
            print(
                f"{'':27s} {'mean ± std':>16s}          "
                f"{statistics.fmean(cas):.3f} ± {statistics.stdev(cas):.3f}   "
                f"{statistics.fmean(asrs):.3f} ± {statistics.stdev(asrs):.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
