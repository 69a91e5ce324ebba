"""RoCLIP's verdict on digits, read from the committed result files: per seed, the undefended
poisoned model's clean accuracy and ASR, RoCLIP's, the drop, the share of images matched to a
caption of their own class in each matching epoch and the clean accuracy after every epoch;
then the 95 % t interval over seeds of ASR after and of the CA drop, and the verdicts of the
target a pretraining-time defense is held to (ASR <= 0.10 with a CA drop <= 0.05).

    python benchmarks/roclip_verdict.py [results/digits] [--validation results/validation/roclip]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchbd.reporting.intervals import interval, verdict
from benchbd.reporting.leaderboard import load_folder

ASR_TARGET, CA_DROP_TARGET = 0.10, 0.05


def rounded(values: list[float] | None) -> str:
    return "-" if not values else " ".join(f"{v:.2f}" for v in values)


def show(results: list[dict], title: str, over_seeds: bool = True) -> None:
    print(f"## {title}")
    by_attack: dict[str, list[dict]] = {}
    for r in sorted(results, key=lambda r: (r["attack"]["name"], r["seed"])):
        by_attack.setdefault(r["attack"]["name"], []).append(r)
    for attack, runs in by_attack.items():
        for r in runs:
            before, after = r["metrics"]["before"], r["metrics"]["after"]
            params = r["defense"]["params"]
            report = r["extra"]["defense_report"]
            print(f"{attack} seed {r['seed']} (lr {params['lr']}, warm-up "
                  f"{params['warmup_steps']}, K {params['every']}, views {params['augment']}): "
                  f"CA {before['ca']:.3f} -> {after['ca']:.3f} (drop "
                  f"{before['ca'] - after['ca']:.3f}), ASR {before['asr']:.3f} -> "
                  f"{after['asr']:.3f}")  # fmt: skip
            if report.get("trained"):
                print(f"    matched to own class: {rounded(report['matched_own_class'])}")
                print(f"    clean CA by epoch:    {rounded(report['clean_ca'])}")
            else:
                print("    (defended model loaded from the cache: its training is recorded "
                      "in the run that trained it)")  # fmt: skip
        if over_seeds and len(runs) > 1:
            asr = interval([r["metrics"]["after"]["asr"] for r in runs])
            drop = interval([r["metrics"]["before"]["ca"] - r["metrics"]["after"]["ca"]
                             for r in runs])  # fmt: skip
            print(f"{attack}: ASR after {asr.text()} -> ASR <= {ASR_TARGET} "
                  f"{verdict(asr, '<=', ASR_TARGET)}; CA drop {drop.text()} -> drop <= "
                  f"{CA_DROP_TARGET} {verdict(drop, '<=', CA_DROP_TARGET)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="results/digits")
    parser.add_argument("--validation", default="results/validation/roclip")
    args = parser.parse_args()
    validation, _ = load_folder(Path(args.validation))
    show(
        [r for r in validation if r["defense"]["name"] == "roclip"],
        "validation (seed 0)",
        over_seeds=False,
    )  # one seed, several recipes: no interval
    results, _ = load_folder(Path(args.folder))
    show([r for r in results if r["defense"]["name"] == "roclip"], f"test ({args.folder})")


if __name__ == "__main__":
    main()
