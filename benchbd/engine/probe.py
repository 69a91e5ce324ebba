"""A linear probe on a frozen encoder: the "before" that a linear-head defense is compared with.

A defense such as CleanCLIP's supervised finetuning is measured afterwards with a trained
linear head, not with the zero-shot text classifier. DER compares the clean-accuracy and ASR
changes between "before" and "after"; with a zero-shot "before" and a linear-head "after" the
two numbers come from different classifiers, so a head that lifts clean accuracy above the
zero-shot level hides any accuracy the finetuning really cost, and DER can never penalise it.
Fitting a linear probe on the poisoned encoder's frozen features, on the same labelled clean
images the defense trains on, gives a "before" measured like the "after". The CleanCLIP paper
likewise reports linear-probe results next to zero-shot ones.

The probe is a logistic regression (scikit-learn, lbfgs: deterministic) wrapped as a torch
module, attached as `ClipBundle.head`, so `evaluate` measures it through `predict_with_head`
exactly as it measures a defense's head.

The same probe is also an opt-in metric of any run (`--eval probe`, `probe_metrics`): fitted on
every labelled clean image, before and after the defense, it asks whether the backdoor lives in
the image features themselves or only in how the text classifier reads them.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from benchbd.core.errors import BenchbdError
from benchbd.engine.data.images import batches_of, is_streamed, stream
from benchbd.engine.data.pairs import UNLABELLED, PairSet, ZeroShotTask
from benchbd.engine.evaluate import STREAM_BATCH, evaluate
from benchbd.engine.model import ClipBundle
from benchbd.engine.plugins import TriggerFn

# Inverse L2 strength on standardised features: scikit-learn's default. The features are
# standardised before fitting (and the scaling folded into the head), so C means what it
# means in any standardised logistic regression rather than depending on the feature width.
PROBE_C = 1.0
# lbfgs converges on a few thousand standardised features in well under this; the cap only
# bounds the time of a badly conditioned fit, and the same cap gives the same head.
PROBE_MAX_ITER = 1000


class ProbeHead(torch.nn.Module):
    """Logits = W f + b for L2-normalised image features f: the fitted logistic regression,
    with the feature standardisation folded into W and b. A class the probe never saw gets a
    bias of -inf, so it is never predicted."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=True)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.linear.requires_grad_(False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


@torch.no_grad()
def encode_images(
    clip: ClipBundle,
    images: torch.Tensor,
    streamed: bool = False,
    batch_size: int = 512,
    normalize: bool = True,
) -> torch.Tensor:
    """(N, D) float32 image features of uint8 `images` on the CPU, computed as evaluation
    computes the features it hands a head: pixel normalisation, image tower, float, L2
    normalisation, and for images read from disk (`streamed`) the bfloat16 autocast
    `evaluate_streamed` uses on CUDA. Features computed otherwise than evaluation computes them
    would measure the mismatch, not the encoder. `normalize=False` skips the L2 normalisation,
    for a detector whose published form scores the raw embeddings."""
    model = clip.model
    device = next(model.parameters()).device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                              enabled=streamed and device.type == "cuda")  # fmt: skip
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = clip.normalize(images[start : start + batch_size].to(device))
        with autocast:
            features = model.encode_image(batch)
        features = features.float()
        chunks.append((F.normalize(features, dim=-1) if normalize else features).cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def probe_features(
    clip: ClipBundle, pairs: PairSet, batch_size: int = 512, normalize: bool = True
) -> torch.Tensor:
    """`encode_images` of every image of `pairs`, in memory or read from disk batch by batch
    (the batches `evaluate_streamed` reads)."""
    if not is_streamed(pairs):
        return encode_images(clip, pairs.images, batch_size=batch_size, normalize=normalize)
    batches = batches_of(len(pairs), STREAM_BATCH)
    chunks = [encode_images(clip, images, True, STREAM_BATCH, normalize)
              for images, _ in stream(pairs.images, batches)]  # fmt: skip
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def _fit(features: np.ndarray, labels: np.ndarray, classes: int, seed: int):
    """(weight (classes, D), bias (classes,)) of a logistic regression on raw features."""
    dim = features.shape[1]
    weight = np.zeros((classes, dim))
    bias = np.full(classes, -np.inf)
    present = np.unique(labels)
    if len(present) == 1:  # nothing to separate: always the one class seen
        bias[present[0]] = 0.0
        return weight, bias
    scaler = StandardScaler().fit(features)
    model = LogisticRegression(
        C=PROBE_C, solver="lbfgs", max_iter=PROBE_MAX_ITER, random_state=seed
    )
    with warnings.catch_warnings():
        # A fit stopped at the cap is still the same fit for the same inputs; a warning per
        # run would only add noise to a benchmark's log.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(scaler.transform(features), labels)
    coef, intercept = model.coef_, model.intercept_
    if len(present) == 2:  # one decision function d for classes_[1]: logits -d/2 and d/2
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    # Fold the standardisation in: W (x - mu) / s + b = (W / s) x + (b - W mu / s).
    folded = coef / scaler.scale_
    weight[model.classes_] = folded
    bias[model.classes_] = intercept - folded @ scaler.mean_
    return weight, bias


def linear_probe(clip: ClipBundle, labelled: PairSet, classes: int, seed: int) -> ClipBundle:
    """`clip` with a logistic-regression head fitted on its frozen, L2-normalised image features
    of `labelled` (every row must carry a class in [0, classes)).

    The result shares `clip`'s model (nothing is copied) and `clip` itself is not changed: no
    head is attached to it, its weights are untouched, and its train/eval mode is given back.
    Because the model is shared, fit and evaluate the probe before a defense changes the model
    in place. The same inputs and seed give the same head."""
    if len(labelled) == 0:
        raise BenchbdError("no labelled images to fit the linear probe on")
    labels = labelled.labels
    if bool(((labels < 0) | (labels >= classes)).any()):
        raise BenchbdError(
            f"the linear probe needs a class label in [0, {classes}) on every image; "
            f"got labels {sorted(set(labels.tolist()) - set(range(classes)))}"
        )
    was_training = clip.model.training
    clip.model.eval()
    try:
        features = probe_features(clip, labelled)
    finally:
        clip.model.train(was_training)
    weight, bias = _fit(features.double().numpy(), labels.numpy(), classes, seed)
    head = ProbeHead(torch.from_numpy(weight).float(), torch.from_numpy(bias).float())
    head.to(next(clip.model.parameters()).device)
    return replace(clip, head=head)


def labelled_rows(pairs: PairSet) -> PairSet:
    """The rows of `pairs` that carry a class: what `--eval probe` fits on (a caption-only
    clean set has none, and is refused before any training)."""
    rows = torch.nonzero(pairs.labels != UNLABELLED).flatten()
    if len(rows) == 0:
        raise BenchbdError(
            "--eval probe fits a linear probe on the labelled clean images, and the clean "
            "split has none: give a labelled clean set (--clean-dataset) or leave out probe"
        )
    return pairs.subset(rows)


def probe_metrics(
    clip: ClipBundle,
    labelled: PairSet,
    evaluation: PairSet,
    task: ZeroShotTask,
    target: int,
    trigger: TriggerFn | None,
    eval_seed: int,
    probe_seed: int,
) -> dict[str, float | None]:
    """probe_ca, probe_asr and probe_ra: CA, ASR and RA of a linear probe of `clip`'s frozen
    image features, fitted on `labelled` and measured on `evaluation` with the same triggered
    images as the zero-shot metrics (`eval_seed`). The CleanCLIP paper reports these beside
    the zero-shot numbers: a backdoor the probe still follows is in the features."""
    probed = linear_probe(clip, labelled, len(task.classnames), probe_seed)
    measured = evaluate(probed, evaluation, task, target, trigger, eval_seed)
    return {"probe_ca": measured.ca, "probe_asr": measured.asr, "probe_ra": measured.ra}
