"""The cost of the opt-in evaluations (`benchbd run --eval probe,retrieval`) against the
zero-shot evaluation every run makes, on the default model and data: badnet's poisoned
benchbd-rn-tiny, seed 0 (taken from the model cache, or trained and cached first).

Each measurement is timed `--repeats` times and the best is kept: the zero-shot evaluation
(CA / ASR / RA on the 2,000 test images), the linear probe (features of the 5,000 clean images,
the logistic regression, then CA / ASR / RA through it) and retrieval (recall@1 / @5 both ways
on the test captions and the retrieval ASR). Figures are seconds and the ratio against the
zero-shot evaluation measured in the same run. A run that asks for an evaluation makes it twice
(before and after the defense), as it makes the zero-shot one.

    python benchmarks/extra_evaluations.py [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from benchbd.core.seeds import substream
from benchbd.engine.evaluate import evaluate
from benchbd.engine.measurements import trigger_of
from benchbd.engine.planning import load_experiment_data
from benchbd.engine.poisoned_model import load_poisoned
from benchbd.engine.probe import labelled_rows, probe_metrics
from benchbd.engine.retrieval import retrieval_metrics
from benchbd.engine.run_config import RunConfig


def best_of(repeats: int, measure: Callable[[], object]) -> tuple[float, object]:
    """(the fastest of `repeats` timed calls, what the last call returned)."""
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = measure()
        times.append(time.perf_counter() - start)
    return min(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = RunConfig(device="cpu")
    data = load_experiment_data(config)
    clip, attack = load_poisoned(config, data)
    test, task, target = data.test, data.task, attack.setup.target
    trigger, seed = trigger_of(attack), substream(config.seed, "evaluate")
    labelled = labelled_rows(data.clean)
    measures = {
        "zero-shot (CA/ASR/RA)": lambda: evaluate(clip, test, task, target, trigger, seed),
        "probe": lambda: probe_metrics(clip, labelled, test, task, target, trigger, seed,
                                       substream(config.seed, "eval-probe")),
        "retrieval": lambda: retrieval_metrics(clip, test, target, trigger, seed),
    }  # fmt: skip
    print(f"{torch.get_num_threads()} threads; {len(test)} test images, {len(labelled)} "
          f"labelled clean images; best of {args.repeats}")  # fmt: skip
    print(f"{'evaluation':<24}{'seconds':>9}{'ratio':>8}  values")
    reference = None
    for name, measure in measures.items():
        seconds, value = best_of(args.repeats, measure)
        reference = reference or seconds
        values = value.to_dict() if hasattr(value, "to_dict") else value
        shown = ", ".join(f"{k} {v:.3f}" for k, v in values.items()
                          if isinstance(v, float))  # fmt: skip
        print(f"{name:<24}{seconds:>9.2f}{seconds / reference:>8.2f}  {shown}")


if __name__ == "__main__":
    main()
