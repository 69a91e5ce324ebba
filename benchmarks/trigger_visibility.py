"""How visible each attack's test-time trigger is, at benchbd's default and at its published
setting: PSNR (dB), SSIM and L-inf (a fraction of 255) of 500 triggered synthetic test images
against the clean ones, as every run records them under extra.trigger_visibility.

    python benchmarks/trigger_visibility.py [--images 500] [--seed 0]

Nothing is trained: a test-time trigger does not depend on the model. The images are the
ones a run measures ASR on (the non-target test images, triggered by the evaluation seed).
"""

from __future__ import annotations

import argparse

from benchbd.core.seeds import substream
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data
from benchbd.engine.evaluate import triggered_examples
from benchbd.engine.planning import build_attack
from benchbd.engine.run_config import RunConfig
from benchbd.engine.visibility import trigger_visibility

# (attack, setting, parameters): benchbd's default first, then the published setting.
SETTINGS = [
    ("badnet", "default", {}),
    ("badnet", "published", {"patch_fraction": 0.071}),  # CleanCLIP: 16 px at 224 px
    ("blended", "default", {}),
    ("blended", "published", {"alpha": 0.2}),  # Chen et al.; the default since 0.3.0
    ("blended", "until 0.3.0", {"alpha": 0.3}),
    ("wanet", "default", {}),
    ("wanet", "published", {"s": 0.5, "cross_ratio": 2.0}),  # BackdoorBench at 32 px
    # Hardening is PGD on the training poisons against a trained surrogate; nothing here
    # poisons, so no surrogate is trained, and the test-time trigger (checkerboards in the
    # four corners) is the same with or without it: both rows measure the same trigger.
    ("label_consistent", "default", {}),
    ("label_consistent", "harden=false", {"harden": False}),
    # Turner et al.: their 3 x 3 px pattern in each corner, the right-hand copies mirrored
    # (badnet's pattern=turner,location=four_corners_mirrored,patch_px=3).
    ("label_consistent", "published", {"trigger_params": "turner"}),
    ("sig", "default", {}),  # BadCLIP's SIG baseline: delta 60, 6 periods
    ("sig", "delta=40", {"delta": 40.0}),  # BackdoorBench
    ("sig", "delta=20", {"delta": 20.0}),
    ("nashville", "default", {}),  # pilgram's filter, as Detect-CLIP uses it
    ("nashville", "strength=0.5", {"strength": 0.5}),
    # PAR's structured triggers, at the authors' settings (the defaults)
    ("stripes", "published", {}),  # +-1 stripes 1 px wide blended at 0.03
    ("triangles", "published", {}),  # 14 px tiles at 224 px (2 px at 32 px), alpha 0.15
    ("triangles", "tile_px=4", {"tile_px": 4}),
    ("watermark", "published", {}),  # red "Watermarked", 0.875 of the width, alpha 0.5
    # badclip's patch is optimised against a trained surrogate, so it is measured by the runs
    # that train one (`benchbd table results/frontier --visibility`).
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # Enough test images that `--images` of them lie outside the target class (1 in 10).
    sizes = DataSizes(train=256, clean=16, test=args.images * 10 // 9 + 20)
    data = load_data("synthetic", sizes, 32)
    print(f"{'attack':<18}{'setting':<15}{'params':<32}{'PSNR dB':>9}{'SSIM':>8}{'L-inf':>8}")
    for name, setting, params in SETTINGS:
        config = RunConfig(attack=name, defense="none", attack_params=params, sizes=sizes,
                           seed=args.seed)  # fmt: skip
        attack = build_attack(config, data)
        clean, triggered = triggered_examples(
            data.test, attack.setup.target, attack.apply_trigger,
            substream(args.seed, "evaluate"), args.images,
        )  # fmt: skip
        v = trigger_visibility(clean, triggered)
        shown = ",".join(f"{k}={x}" for k, x in params.items()) or "-"
        print(f"{name:<18}{setting:<15}{shown:<32}{v['psnr_db']:>9.2f}{v['ssim']:>8.3f}"
              f"{v['linf']:>8.3f}")  # fmt: skip
    print(f"(means over {len(clean)} non-target test images at 32 px, seed {args.seed})")


if __name__ == "__main__":
    main()
