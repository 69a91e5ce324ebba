"""The input detectors' deliberate deviations from their authors' code, measured: the test-split
detection AUROC of each detector as benchbd runs it and with the deviation undone, on the
poisoned model a run of the same dataset, attack and seed uses (loaded from the cache; trained
first if absent: minutes). docs/fidelity.md quotes the figures.

- STRIP: N overlays drawn once and shared by every input (benchbd) against N fresh draws per
  input (the authors' `entropyCal`); the authors' sum blend against the average.
- BDetCLIP: benign descriptions with and without the class's synonyms.
- k-distance at test time: L2-normalised embeddings (benchbd) against raw ones (Detect-CLIP's
  scoring script).

    python benchmarks/input_detection_deviations.py [--dataset digits]
        [--attacks badnet,blended,wanet,label_consistent] [--seed 0] [--threads 1]
"""

from __future__ import annotations

import argparse

# isort: off
import benchbd  # noqa: F401  (first: it pins the CPU kernels, which torch reads as it loads)

# isort: on
import numpy as np
import torch
from benchbd.defenses.bdetclip import BDetCLIP
from benchbd.defenses.input_scores import as_floats, zero_shot_logits
from benchbd.defenses.kdistance_input import KDistanceInput
from benchbd.defenses.screening import neighbours
from benchbd.defenses.strip import STRIP, mean_entropy, superimpose
from sklearn.metrics import roc_auc_score

from benchbd.core.params import build
from benchbd.core.seeds import substream
from benchbd.engine.evaluate import trigger_test_images
from benchbd.engine.planning import load_experiment_data
from benchbd.engine.plugins import DefenseContext
from benchbd.engine.poisoned_model import load_poisoned
from benchbd.engine.probe import encode_images
from benchbd.engine.run_config import RunConfig


def auroc(score, clip, context, clean: torch.Tensor, triggered: torch.Tensor) -> float:
    values = np.concatenate([np.asarray(score(clip, clean, context)),
                             np.asarray(score(clip, triggered, context))])  # fmt: skip
    truth = np.r_[np.zeros(len(clean)), np.ones(len(triggered))]
    return float(roc_auc_score(truth, values))


def strip_fresh_draws(detector: STRIP, seed: int):
    """The authors' draw: N fresh overlays for every input, from the same clean images."""
    generator = torch.Generator().manual_seed(seed)

    def score(clip, images, context):
        pool, n, out = context.clean.images, detector.params.overlays, []
        for image in images:
            picks = torch.randint(0, len(pool), (n,), generator=generator)
            blended = superimpose(as_floats(image[None]), as_floats(pool[picks]), "sum")
            p = zero_shot_logits(clip, blended, detector.weights).softmax(-1).double()
            out.append(-mean_entropy(p.view(1, n, -1))[0])
        return torch.stack(out)

    return score


def kdistance_raw(detector: KDistanceInput):
    def score(clip, images, context):
        references = encode_images(clip, context.clean.images, normalize=False).numpy()
        queries = encode_images(clip, images, normalize=False).numpy()
        return neighbours(queries, references, detector.params.k + 1, None)[0][:, -1]

    return score


def measure(dataset: str, attack: str, seed: int) -> dict[str, float]:
    config = RunConfig(attack=attack, defense="none", dataset=dataset, seed=seed)
    data = load_experiment_data(config)
    clip, poisoner = load_poisoned(config, data)
    context = DefenseContext(data.clean, data.task, substream(seed, "defense"))
    test, target = data.test, poisoner.setup.target
    triggered = trigger_test_images(test.images, test.labels, target, poisoner.apply_trigger,
                                    substream(seed, "evaluate"))  # fmt: skip
    found = {}
    for label, params in (("strip", {}), ("strip blend=mean", {"blend": "mean"})):
        detector = STRIP(build(STRIP.Params, params, "strip"))
        detector.fit(clip, context)
        found[label] = auroc(detector.score, clip, context, test.images, triggered)
    found["strip fresh draws"] = auroc(strip_fresh_draws(detector, seed), clip, context,
                                       test.images, triggered)  # fmt: skip
    for label, params in (("bdetclip", {}), ("bdetclip synonyms=false", {"synonyms": False})):
        detector = BDetCLIP(build(BDetCLIP.Params, params, "bdetclip"))
        detector.fit(clip, context)
        found[label] = auroc(detector.score, clip, context, test.images, triggered)
    detector = KDistanceInput(build(KDistanceInput.Params, {}, "kdistance_input"))
    detector.fit(clip, context)
    found["kdistance_input"] = auroc(detector.score, clip, context, test.images, triggered)
    found["kdistance_input raw"] = auroc(kdistance_raw(detector), clip, context, test.images,
                                         triggered)  # fmt: skip
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--attacks", default="badnet,blended,wanet,label_consistent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    attacks = args.attacks.split(",")
    rows = {attack: measure(args.dataset, attack, args.seed) for attack in attacks}
    print(f"{'detection AUROC':28}" + "".join(f"{a:>18}" for a in attacks))
    for label in next(iter(rows.values())):
        print(f"{label:28}" + "".join(f"{rows[a][label]:18.3f}" for a in attacks))


if __name__ == "__main__":
    main()
