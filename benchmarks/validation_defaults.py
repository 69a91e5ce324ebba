"""Re-check every tuned default on the validation split, never on test.

Three parts, each a set of `benchbd run --split validation` cells written to `--out` (the
evidence: one result file per cell, trigger visibility included), then summarised:

- triggers: each attack at its published trigger setting, at benchbd's default, and between,
  with no defense: does the attack take (ASR) and how visible is its trigger (PSNR)? The rule
  for a default, fixed before measuring: the least visible setting on the ladder whose
  validation ASR is at least 0.9 (label_consistent, weaker by design: Turner's corners when
  their ASR is within 0.1 of the default's), so that the defenses face a backdoor that took.
- defenses: every defense at its default recipe against every attack's default, so the
  README's claims about the recipes (CleanCLIP's ASR and CA cost, finetuning's weaker effect)
  are checked on validation images.
- prompts: clean accuracy of each poisoned model with the embedded data's six zero-shot
  templates against the single "a photo of a {}" template.

    python benchmarks/validation_defaults.py [--part triggers,defenses,prompts] [--seeds 0]
        [--jobs 2] [--out results/validation]

Cells run as `benchbd run` processes, `--jobs` at a time with the CPU threads split between
them; poisoned models come from (and go to) the model cache, so the default settings' models
are the ones the reference grid reuses.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from benchbd.core.seeds import substream
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data
from benchbd.engine.evaluate import evaluate
from benchbd.engine.poisoned_model import load_poisoned
from benchbd.engine.run_config import RunConfig
from benchbd.reporting.leaderboard import load_folder

# (attack, label, parameters): from the published setting up to benchbd's default.
TRIGGERS = [
    ("badnet", "published (CleanCLIP 16/224 px)", {"patch_fraction": 0.071}),
    ("badnet", "4 px", {"patch_fraction": 0.125}),
    ("badnet", "6 px", {"patch_fraction": 0.1875}),
    ("badnet", "default (8 px)", {}),
    ("blended", "published (alpha 0.2)", {"alpha": 0.2}),
    ("blended", "default (alpha 0.3)", {}),
    ("wanet", "published (s 0.5, noise mode)", {"s": 0.5, "cross_ratio": 2.0}),
    ("wanet", "s 4", {"s": 4.0}),
    ("wanet", "default (s 8)", {}),
    ("label_consistent", "published (Turner 3x3 corners)", {"trigger_params": "turner"}),
    ("label_consistent", "default (8 px corners)", {}),
]
ATTACKS = ("badnet", "blended", "wanet", "label_consistent")
DEFENSES = ("finetune", "inmodal", "cleanclip", "cleanclip_supervised")
ONE_TEMPLATE = ["a photo of a {}"]


def command(attack: str, defense: str, seed: int, params: dict, out: Path, threads: int):
    args = [sys.executable, "-m", "benchbd", "run", "--attack", attack, "--defense", defense,
            "--seed", str(seed), "--split", "validation", "--out", str(out),
            "--threads", str(threads)]  # fmt: skip
    for name, value in params.items():
        args += ["--param", f"{attack}:{name}={value}"]
    return args


def run_all(commands: list[list[str]], jobs: int) -> None:
    def one(args: list[str]) -> None:
        done = subprocess.run(args, capture_output=True, text=True)
        status = "ok" if done.returncode == 0 else f"FAILED: {done.stderr.strip()[-300:]}"
        print(" ".join(args[3:11]), status, flush=True)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, commands))


def table(out: Path) -> pd.DataFrame:
    results, _ = load_folder(out)
    rows = []
    for r in results:
        visibility = r.get("extra", {}).get("trigger_visibility") or {}
        rows.append({
            "attack": r["attack"]["name"],
            "attack params": ",".join(f"{k}={v}" for k, v in sorted(r["attack"]["params"].items())),
            "defense": r["defense"]["name"],
            "seed": r["seed"],
            "CA before": r["metrics"]["before"]["ca"],
            "ASR before": r["metrics"]["before"]["asr"],
            "CA after": r["metrics"]["after"]["ca"],
            "ASR after": r["metrics"]["after"]["asr"],
            "PSNR dB": visibility.get("psnr_db"),
        })  # fmt: skip
    return pd.DataFrame(rows)


def prompts(seeds: list[int]) -> None:
    data = load_data("synthetic", DataSizes(), image_size=32)
    one = replace(data.task, templates=ONE_TEMPLATE)
    for attack in ATTACKS:
        for seed in seeds:
            clip, built = load_poisoned(RunConfig(attack=attack, defense="none", seed=seed), data)
            target, eval_seed = built.setup.target, substream(seed, "evaluate")
            six = evaluate(clip, data.validation, data.task, target, None, eval_seed)
            single = evaluate(clip, data.validation, one, target, None, eval_seed)
            print(f"prompts {attack} seed {seed}: validation CA with six templates "
                  f"{six.ca:.3f}, with one {single.ca:.3f}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", default="triggers,defenses,prompts")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="attacks to run")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/validation"))
    args = parser.parse_args()
    parts = set(args.part.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    chosen = set(args.attacks.split(","))
    threads = max(1, torch.get_num_threads() // args.jobs)
    commands = []
    if "triggers" in parts:
        commands += [command(a, "none", s, p, args.out, threads)
                     for a, _, p in TRIGGERS for s in seeds if a in chosen]  # fmt: skip
    if "defenses" in parts:
        commands += [command(a, d, s, {}, args.out, threads)
                     for a in ATTACKS for s in seeds for d in DEFENSES if a in chosen]  # fmt: skip
    run_all(commands, args.jobs)
    if commands:
        frame = table(args.out)
        columns = ["attack", "attack params", "defense"]
        summary = frame.groupby(columns, dropna=False).agg(
            seeds=("seed", "count"), ca_before=("CA before", "mean"),
            asr_before=("ASR before", "mean"), ca_after=("CA after", "mean"),
            asr_after=("ASR after", "mean"), psnr_db=("PSNR dB", "mean"),
        )  # fmt: skip
        with pd.option_context("display.width", 200, "display.max_colwidth", 60):
            print(summary.round(3).to_string())
    if "prompts" in parts:
        prompts(seeds)


if __name__ == "__main__":
    main()
