"""Detection AUROC of the screening defenses against each attack, on the poisoned model.

For each attack the poisoned model is trained once (or loaded from the cache); each screen
scores the poisoned training pairs with it (or with the clean model, as its `model` parameter
says) and the script prints AUROC and TPR at 5 % FPR against the rows the attack poisoned.
Nothing is pretrained on the kept rows (`benchbd run --defense NAME` does that as well).
Variants beside the defaults show what the defaults were chosen against: k-distance with the
training pairs as its reference set (Detect-CLIP's own), at its k = 16 and at a k above the
number of poisoned rows (82 in the tiny run), and SafeCLIP's similarity split with the
poisoned model.

Tiny by default (1,024 training pairs, 12 epochs in batches of 64, 8 % poisons, 256 clean
pairs: minutes on a CPU); --full is benchbd's default run (20,000 pairs, 8 epochs, batch 128,
3 % poisons, 5,000 clean pairs).

    python benchmarks/detection.py [--attacks badnet,blended] [--screens kdistance,lof:k=32]
        [--full] [--seed 0] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchbd.core.params import parse_variant
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.plugins import defenses, stage_of
from benchbd.engine.run_config import RunConfig
from benchbd.engine.stages import detect

TINY = {"sizes": DataSizes(train=1024, clean=256, test=200, validation=0),
        "pretrain": {"epochs": 12, "batch_size": 64}, "poison_rate": 0.08}  # fmt: skip
VARIANTS = ["kdistance:reference=train", "kdistance:reference=train;k=128",
            "cosine_gmm:model=poisoned"]  # fmt: skip


def screens(spec: str | None) -> list[tuple[str, dict]]:
    """NAME or NAME:param=value;param=value, comma-separated; default: every built-in screen
    at its defaults, then VARIANTS."""
    if spec:
        items = spec.split(",")
    else:
        names = [n for n in defenses.names() if stage_of(defenses.get(n)) == "screen"]
        items = [*names, *VARIANTS]
    return [parse_variant(item) for item in items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attacks", default="badnet,blended")
    parser.add_argument("--screens", default=None)
    parser.add_argument("--full", action="store_true", help="benchbd's default run, not tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    setting = {} if args.full else TINY
    attacks = args.attacks.split(",")
    chosen = screens(args.screens)
    rows: dict[str, list[str]] = {}
    start = time.perf_counter()
    for attack in attacks:
        for name, params in chosen:
            config = RunConfig(attack=attack, defense=name, defense_params=params,
                               seed=args.seed, device="cpu", **setting)  # fmt: skip
            metrics, _ = detect(config)
            label = name + "".join(f" {k}={v}" for k, v in params.items())
            auroc, tpr = metrics["auroc"], metrics["tpr_at_5fpr"]
            rows.setdefault(label, []).append("-" if auroc is None else f"{auroc:.3f} / {tpr:.3f}")
    size = "default run" if args.full else "tiny run"
    print(f"detection AUROC / TPR at 5 % FPR, {size}, seed {args.seed} "
          f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
    width = max(map(len, rows))
    print(f"{'screen':{width}s}  " + "  ".join(f"{a:>15s}" for a in attacks))
    for label, cells in rows.items():
        print(f"{label:{width}s}  " + "  ".join(f"{c:>15s}" for c in cells))


if __name__ == "__main__":
    main()
