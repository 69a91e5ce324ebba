"""Detect-CLIP's detectors, benchbd's and the public code's, on one poisoned model's embeddings:
the detection AUROC of every deviation docs/fidelity.md lists, measured both ways.

The public code's computations are the re-derivations tests/test_detect_clip_fidelity.py checks
benchbd against (`authors_*`). Its setting is the training batch as reference set, images and
captions both, raw embeddings: on digits (1,047 training pairs, under the public code's batch of
2,048) that is `reference=train features=image+text normalize=false` over the whole training
set, exactly. The poisoned model is the one a run of the same dataset, attack and seed trains
(loaded from the cache; trained first if absent: minutes), under the same portable kernels, so
benchbd's default rows are the committed result files' detection numbers.

    python benchmarks/detect_clip_deviations.py [--dataset digits] [--attacks badnet,blended]
        [--seed 0] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# isort: off
import benchbd  # noqa: F401  (first: it pins the CPU kernels, which torch reads as it loads)

# isort: on
import numpy as np
import torch
from benchbd.defenses.dao import DAO
from benchbd.defenses.iforest import IsolationForestScreen
from benchbd.defenses.kdistance import KDistance
from benchbd.defenses.lof import LocalOutlier
from benchbd.defenses.screening import caption_features, image_embeddings, own_rows, reference_set
from benchbd.defenses.slof import SLOF
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from benchbd.core.params import build
from benchbd.core.seeds import substream
from benchbd.engine.planning import load_experiment_data
from benchbd.engine.plugins import DefenseContext
from benchbd.engine.poisoned_model import load_poisoned
from benchbd.engine.run_config import RunConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_detect_clip_fidelity import authors_dao, authors_slof  # noqa: E402

K = 16


def scorer(cls, **params):
    return cls(build(cls.Params, {"k": K, **params} if cls is not IsolationForestScreen
                     else params, cls.__name__))  # fmt: skip


class Embedded:
    """One poisoned model's embeddings of the training and clean pairs, raw and normalised."""

    def __init__(self, config: RunConfig) -> None:
        data = load_experiment_data(config)
        clip, attack = load_poisoned(config, data)
        poisoned = attack.poison(data.train)
        self.truth = np.zeros(len(poisoned.pairs), dtype=bool)
        self.truth[np.asarray(poisoned.indices)] = True
        # the seed a run gives the defense (the isolation forest's)
        self.context = DefenseContext(data.clean, data.task, substream(config.seed, "defense"))
        self.sets = {}
        for normalize in (True, False):
            for name, pairs in (("train", poisoned.pairs), ("clean", data.clean)):
                images = image_embeddings(clip, pairs, normalize)
                captions = caption_features(clip, pairs.captions, normalize=normalize)
                self.sets[name, normalize] = (images, captions.numpy().astype(np.float64))

    def score(self, cls, reference="train", features="image+text", normalize=False, **params):
        """benchbd's scores, assembled as `EmbeddingScreen.screen` assembles them."""
        images, captions = self.sets["train", normalize]
        text = features == "image+text"
        if reference == "clean":
            ref_images, ref_captions = self.sets["clean", normalize]
            refs = reference_set(ref_images, ref_captions if text else None)
            own = None
        else:
            refs = reference_set(images, captions if text else None)
            own = own_rows(len(images), features)
        return scorer(cls, **params).score(images, refs, own, self.context)

    def authors(self, normalize=False):
        images, captions = self.sets["train", normalize]
        return torch.from_numpy(images), torch.from_numpy(captions)

    def auroc(self, scores) -> float:
        return float(roc_auc_score(self.truth, scores))


def rows(e: Embedded) -> list[tuple[str, float | str]]:
    """(what, AUROC or a statistic) for every comparison docs/fidelity.md quotes."""
    v, t = e.authors()
    out: list[tuple[str, float | str]] = []
    settings = (("clean", "image", True), ("train", "image+text", False))
    for reference, features, normalize in settings:
        where = f"reference={reference} features={features} normalize={normalize}"
        before = e.score(KDistance, reference, features, normalize, k=K - 1)  # old: k-th
        after = e.score(KDistance, reference, features, normalize)
        out += [(f"kdistance k-th (before) [{where}]", e.auroc(before)),
                (f"kdistance (k+1)-th (after, public) [{where}]", e.auroc(after))]  # fmt: skip
    paper = {"reference": "train", "features": "image+text", "normalize": False}
    slof = e.score(SLOF, **paper)
    out += [
        ("slof benchbd (true neighbours) [paper]", e.auroc(slof)),
        ("slof public code (shifted neighbours) [paper]", e.auroc(authors_slof(v, t, K))),
    ]
    dao = e.score(DAO, **paper)
    out += [
        ("dao benchbd (textbook) [paper]", e.auroc(dao)),
        ("dao public code [paper]", e.auroc(authors_dao(v, t, K))),
    ]
    for label, switches in (
        ("dao public, neighbours at true rows", {"shifted": False}),
        ("dao public, query reach k-th", {"query_position": K - 1}),
        ("dao public, LID without the self term", {"lid_with_self": False}),
    ):
        out.append((f"{label} [paper]", e.auroc(authors_dao(v, t, K, **switches))))
    for cls, name in ((KDistance, "kdistance"), (SLOF, "slof"), (DAO, "dao")):
        raw = e.score(cls, **paper)
        unit = e.score(cls, "train", "image+text", True)
        rho = spearmanr(raw, unit).statistic
        out += [(f"{name} [paper, normalize=True]", e.auroc(unit)),
                (f"{name} Spearman(raw, normalised) [paper]", f"{rho:.3f}")]  # fmt: skip
        image = e.score(cls, "train", "image", False)
        out.append((f"{name} [paper, features=image]", e.auroc(image)))
    forest = e.score(IsolationForestScreen, **paper)
    out.append(("iforest [paper]", e.auroc(forest)))
    norms = np.linalg.norm(e.sets["train", False][0], axis=1)
    out.append(("image embedding norm: std / mean", f"{norms.std() / norms.mean():.3f}"))
    for cls, name in ((KDistance, "kdistance"), (SLOF, "slof"), (LocalOutlier, "lof"),
                      (DAO, "dao"), (IsolationForestScreen, "iforest")):  # fmt: skip
        out.append((f"{name} [benchbd default]", e.auroc(e.score(cls, "clean", "image", True))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--attacks", default="badnet,blended,wanet,label_consistent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table: dict[str, list[str]] = {}
    attacks = args.attacks.split(",")
    for attack in attacks:
        config = RunConfig(attack=attack, defense="kdistance", seed=args.seed,
                           dataset=args.dataset, device="cpu")  # fmt: skip
        for what, value in rows(Embedded(config)):
            table.setdefault(what, []).append(value if isinstance(value, str) else f"{value:.3f}")
    print(f"detection AUROC, {args.dataset}, seed {args.seed}, k = {K}")
    width = max(map(len, table))
    print(f"{'':{width}s}  " + "  ".join(f"{a:>16s}" for a in attacks))
    for what, cells in table.items():
        print(f"{what:{width}s}  " + "  ".join(f"{c:>16s}" for c in cells))


if __name__ == "__main__":
    main()
