"""The input detectors' scores against independent re-derivations of their authors' code.

Each `authors_*` function below re-derives, in numpy or torch, the computation of the file
named at it, on what that code takes (float images, a model returning class probabilities or
logits, text lists); the "model" is CLIP's zero-shot classifier written out here on its own.
benchbd's detector, given the same images (small random ones) and the same draws, must agree
to float tolerance wherever docs/fidelity.md lists no deviation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from benchbd.defenses.bdetclip import UNRELATED, BDetCLIP
from benchbd.defenses.kdistance_input import KDistanceInput
from benchbd.defenses.scale_up import ScaleUp
from benchbd.defenses.strip import STRIP

from benchbd.core.params import build
from benchbd.core.seeds import substream
from benchbd.engine.model import create_clip
from benchbd.engine.plugins import DefenseContext

EXACT = "donot_use_mm_for_euclid_dist"


@pytest.fixture(scope="module")
def clip():
    model = create_clip(seed=0)
    model.model.eval()  # as the input stage hands it over
    return model


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(11)
    return torch.randint(0, 256, (9, 3, 32, 32), dtype=torch.uint8, generator=generator)


def context_of(data) -> DefenseContext:
    return DefenseContext(data.clean, data.task, seed=3)


def class_weights(clip, task) -> torch.Tensor:
    """(D, C): per class, the prompts' normalised text embeddings averaged and renormalised
    (the zero-shot classifier every one of these codes builds from its templates)."""
    columns = []
    with torch.no_grad():
        for name in task.classnames:
            text = clip.model.encode_text(clip.tokenize(task.prompts(name))).float()
            columns.append(F.normalize(F.normalize(text, dim=-1).mean(0), dim=0))
    return torch.stack(columns, dim=1)


def zero_shot_model(clip, weights):
    """What the authors' `self.model(x)` is here: float images in [0, 1] (or above) ->
    logits, logit_scale.exp() * cos(image, class)."""

    def model(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pixels = (x - clip.mean) / clip.std
            v = F.normalize(clip.model.encode_image(pixels).float(), dim=-1)
            return clip.model.logit_scale.exp() * v @ weights

    return model


def authors_strip(clip, weights, images: torch.Tensor, overlays: torch.Tensor) -> np.ndarray:
    """STRIP's `superimpose` and `entropyCal` (core/defenses/STRIP.py of the BackdoorBox-style
    port; STRIP_CIFAR10 of the STRIP authors): per input, channels-last, each overlay added
    with cv2.addWeighted(background, 1, overlay, 1, 0) (float: a plain sum), the model's
    probabilities of the n blends, -nansum(p * log2 p) over all of them, divided by n."""
    model = zero_shot_model(clip, weights)
    n = len(overlays)
    out = []
    for x in images.float().div(255.0):
        background = x.numpy().transpose(1, 2, 0)
        blends = [background * 1 + overlays[k].numpy().transpose(1, 2, 0) * 1 + 0
                  for k in range(n)]  # fmt: skip
        batch = torch.tensor(np.stack(blends)).permute(0, 3, 1, 2)
        p = model(batch).softmax(dim=1).double().numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(-np.nansum(p * np.log2(p)) / n)
    return np.array(out)


def test_strip_is_the_authors_mean_entropy_negated(clip, images, tiny_data):
    detector = STRIP(build(STRIP.Params, {"overlays": 5}, "strip"))
    context = context_of(tiny_data)
    detector.fit(clip, context)
    ours = detector.score(clip, images, context).numpy()
    theirs = authors_strip(clip, class_weights(clip, tiny_data.task), images, detector.overlays)
    np.testing.assert_allclose(ours, -theirs, rtol=1e-4, atol=1e-6)
    # the overlays are clean images of the defender's split, drawn with the defense seed
    assert any(torch.equal(detector.overlays[0] * 255, img.float())
               for img in context.clean.images)  # fmt: skip


def authors_spc(clip, weights, images: torch.Tensor, scale_set: list[float]) -> np.ndarray:
    """BackdoorBox core/defenses/SCALE_UP.py `_detect`: original_pred = argmax model(x);
    for each scale, argmax model(clip(x * scale, 0, 1)); spc += (scaled == original_pred);
    spc /= len(scale_set)."""
    model = zero_shot_model(clip, weights)
    inputs = images.float() / 255.0
    original_pred = torch.argmax(model(inputs), dim=1)
    spc_score = torch.zeros(inputs.size(0))
    for scale in scale_set:
        scale_label = torch.argmax(model(torch.clip(inputs * scale, 0.0, 1.0)), dim=1)
        spc_score += scale_label == original_pred
    return (spc_score / len(scale_set)).numpy()


def test_scale_up_is_the_authors_spc(clip, images, tiny_data):
    detector = ScaleUp(build(ScaleUp.Params, {}, "scale_up"))
    context = context_of(tiny_data)
    detector.fit(clip, context)
    ours = detector.score(clip, images, context).numpy()
    theirs = authors_spc(clip, class_weights(clip, tiny_data.task), images, [3, 5, 7, 9, 11])
    np.testing.assert_allclose(ours, theirs, atol=1e-7)


def test_scale_ups_standardised_spc_ranks_and_rejects_as_the_raw_one():
    """The data-limited variant's (spc - mean) / std over clean validation SPC (init_spc_norm)
    is increasing: AUROC and the set a clean-validation threshold rejects are the same."""
    from sklearn.metrics import roc_auc_score

    from benchbd.engine.input_stage import rejection_threshold

    rng = np.random.default_rng(0)
    validation = rng.integers(0, 6, 200) / 5
    test, truth = rng.integers(0, 6, 300) / 5, rng.integers(0, 2, 300)
    mean, std = validation.mean(), validation.std(ddof=1)  # torch.std: unbiased
    standard = (test - mean) / std
    assert roc_auc_score(truth, test) == pytest.approx(roc_auc_score(truth, standard))
    raw_flags = test > rejection_threshold(validation)
    assert (raw_flags == (standard > rejection_threshold((validation - mean) / std))).all()


def authors_bdetclip_diff(clip, task, sentences: dict[str, str], images, synonyms: bool):
    """BDetCLIP `get_zeroshot_metrics`: text1 = the class-related sentences, text2 =
    [template(c).replace('.', ',') + ' ' + un_class_data[c].lower().replace('"', '')];
    each set's text features normalised, averaged, renormalised; image features normalised;
    diff = (image @ T1 - image @ T2).sum(dim=1)."""
    embeddings1, embeddings2 = [], []
    with torch.no_grad():
        for c in task.classnames:
            names = [c, *(task.synonyms.get(c, []) if synonyms else [])]
            text1 = list(dict.fromkeys(t for name in dict.fromkeys(names)
                                       for t in task.prompts(name)))  # fmt: skip
            text2 = [t.replace(".", ",") + " " + sentences[c].lower().replace('"', "")
                     for t in task.prompts(c)]  # fmt: skip
            for text, found in ((text1, embeddings1), (text2, embeddings2)):
                e = clip.model.encode_text(clip.tokenize(text)).float()
                e /= e.norm(dim=-1, keepdim=True)
                e = e.mean(dim=0)
                found.append(e / e.norm())
        t1, t2 = torch.stack(embeddings1, dim=1), torch.stack(embeddings2, dim=1)
        v = clip.model.encode_image(clip.normalize(images)).float()
        v /= v.norm(dim=-1, keepdim=True)
    return ((v @ t1) - (v @ t2)).sum(dim=1).numpy()


@pytest.mark.parametrize("synonyms", [True, False])
def test_bdetclip_is_the_authors_contrast_negated(clip, images, tiny_data, synonyms):
    detector = BDetCLIP(build(BDetCLIP.Params, {"synonyms": synonyms}, "bdetclip"))
    context = context_of(tiny_data)
    detector.fit(clip, context)
    ours = detector.score(clip, images, context).numpy()
    task = tiny_data.task
    generator = torch.Generator().manual_seed(substream(context.seed, "bdetclip-sentences"))
    picks = torch.randint(0, len(UNRELATED), (len(task.classnames),), generator=generator)
    sentences = {c: UNRELATED[int(k)] for c, k in zip(task.classnames, picks, strict=True)}
    theirs = authors_bdetclip_diff(clip, task, sentences, images, synonyms)
    np.testing.assert_allclose(ours, -theirs, rtol=1e-4, atol=1e-5)


def test_kdistance_input_is_detect_clips_k_distance(clip, images, tiny_data):
    """k_distance.py line 48, `a[:, k]` of the sorted exact distances; the query is not among
    the references, so nothing is masked out."""
    k = 4
    detector = KDistanceInput(build(KDistanceInput.Params, {"k": k}, "kdistance_input"))
    context = context_of(tiny_data)
    detector.fit(clip, context)
    ours = detector.score(clip, images, context).numpy()
    with torch.no_grad():
        reference = F.normalize(clip.model.encode_image(clip.normalize(context.clean.images))
                                .float(), dim=-1)  # fmt: skip
        query = F.normalize(clip.model.encode_image(clip.normalize(images)).float(), dim=-1)
    a, _ = torch.sort(torch.cdist(query, reference, p=2, compute_mode=EXACT), dim=1)
    np.testing.assert_allclose(ours, a[:, k].numpy(), rtol=1e-5, atol=1e-6)
