"""Image-text retrieval on the evaluation split's own captions (`--eval retrieval`).

Zero-shot accuracy asks the text tower about a handful of class prompts; retrieval asks it about
every caption of the split, which is what a CLIP model is used for beyond classification. Four
recalls are measured on the clean pairs:

- image -> text recall@K: the fraction of images whose own caption is among the K captions most
  similar to the image (sklearn's `top_k_accuracy_score`, over the distinct captions);
- text -> image recall@K: the fraction of captions whose own image is among the K most similar
  images.

A caption text shared by several pairs (the synthetic set draws captions from templates, a
labelled folder's captions are a class prompt) is one candidate, and each of its images counts
as its own: ranking one copy of a text above another would be a tie broken at random, not a
retrieval. One more number measures the backdoor: `retrieval_asr`, among the triggered test
images whose true class is not the target (the same images, with the same triggers, as the
zero-shot ASR), the fraction whose most similar caption is a caption of a target-class pair.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import top_k_accuracy_score

from benchbd.engine.data.images import batches_of, is_streamed, stream
from benchbd.engine.data.pairs import PairSet
from benchbd.engine.evaluate import STREAM_BATCH, trigger_test_images
from benchbd.engine.model import ClipBundle
from benchbd.engine.plugins import TriggerFn
from benchbd.engine.probe import encode_images, probe_features

RECALL_AT = (1, 5)  # the K of recall@K, as retrieval benchmarks report them
QUERIES_PER_CHUNK = 1024  # queries scored at once: a score matrix per chunk, never N x N
# Below any cosine similarity: the score of two stand-in candidates that no query ever prefers
# to a real caption. With them there are always at least three candidates, so scikit-learn takes
# its multiclass path (its binary path wants one score per image, not one per caption).
NO_CAPTION_SCORE = -2.0
STAND_INS = 2


@torch.no_grad()
def caption_features(clip: ClipBundle, captions: Sequence[str], batch_size: int = 512):
    """(N, D) float32 L2-normalised text features on the CPU, as zero-shot prompts are
    encoded."""
    device = next(clip.model.parameters()).device
    chunks = []
    for start in range(0, len(captions), batch_size):
        tokens = clip.tokenize(list(captions[start : start + batch_size])).to(device)
        chunks.append(F.normalize(clip.model.encode_text(tokens).float(), dim=-1).cpu())
    return torch.cat(chunks)


def triggered_features(
    clip: ClipBundle, pairs: PairSet, target: int, trigger: TriggerFn, seed: int
) -> torch.Tensor:
    """Features of the non-target images of `pairs`, triggered exactly as `evaluate` triggers
    them (for a split read from disk: batch by batch, each with its batch's named stream)."""
    if not is_streamed(pairs):
        return encode_images(clip, trigger_test_images(pairs.images, pairs.labels, target,
                                                       trigger, seed))  # fmt: skip
    batches = batches_of(len(pairs), STREAM_BATCH)
    chunks = []
    for number, (images, positions) in enumerate(stream(pairs.images, batches)):
        labels = pairs.labels[positions]
        if (labels != target).any():
            triggered = trigger_test_images(images, labels, target, trigger, seed, number)
            chunks.append(encode_images(clip, triggered, True, STREAM_BATCH))
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def distinct_captions(captions: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """(the distinct caption texts in order of first appearance, each pair's index into
    them)."""
    index: dict[str, int] = {}
    text_of = [index.setdefault(caption, len(index)) for caption in captions]
    return list(index), torch.tensor(text_of, dtype=torch.long)


def image_to_text_recall(
    images: torch.Tensor, texts: torch.Tensor, text_of: torch.Tensor, k: int
) -> float:
    """Fraction of images whose own caption (`text_of`) is among the `k` most similar of
    `texts`, by scikit-learn's top-k accuracy with the captions as classes."""
    candidates = np.arange(len(texts) + STAND_INS)  # the last: NO_CAPTION_SCORE columns
    hits = 0
    with warnings.catch_warnings():
        # k at or above the number of captions gives a perfect score, which is then the truth.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for start in range(0, len(images), QUERIES_PER_CHUNK):
            scores = images[start : start + QUERIES_PER_CHUNK] @ texts.T
            scores = F.pad(scores, (0, STAND_INS), value=NO_CAPTION_SCORE).double().numpy()
            truth = text_of[start : start + QUERIES_PER_CHUNK].numpy()
            hits += top_k_accuracy_score(truth, scores, k=k, labels=candidates, normalize=False)
    return float(hits / len(images))


def text_to_image_recall(
    images: torch.Tensor, texts: torch.Tensor, text_of: torch.Tensor, k: int
) -> float:
    """Fraction of captions (every pair's, repeats included) whose own image is among the `k`
    images most similar to the caption. A text shared by several pairs has several own images:
    any one of them in the top `k` is a hit for each of its pairs. (scikit-learn's top-k
    accuracy takes one true class per query, so torch's top-k is used here.)"""
    k = min(k, len(images))
    pairs_per_text = torch.bincount(text_of, minlength=len(texts))
    hits = torch.zeros(len(texts), dtype=torch.bool)
    for start in range(0, len(texts), QUERIES_PER_CHUNK):
        scores = texts[start : start + QUERIES_PER_CHUNK] @ images.T
        nearest = text_of[scores.topk(k, dim=1).indices]  # the texts of the k nearest images
        wanted = torch.arange(start, start + len(scores))
        hits[start : start + len(scores)] = (nearest == wanted[:, None]).any(dim=1)
    return int((pairs_per_text * hits).sum()) / len(text_of)


def retrieval_attack_success(
    triggered: torch.Tensor, texts: torch.Tensor, target_text: torch.Tensor
) -> float:
    """Fraction of triggered images whose most similar caption is a target-class caption."""
    nearest = torch.cat([(triggered[start : start + QUERIES_PER_CHUNK] @ texts.T).argmax(dim=1)
                         for start in range(0, len(triggered), QUERIES_PER_CHUNK)])  # fmt: skip
    return int(target_text[nearest].sum()) / len(nearest)


def retrieval_metrics(
    clip: ClipBundle, pairs: PairSet, target: int, trigger: TriggerFn | None, seed: int
) -> dict[str, float | None]:
    """i2t / t2i recall@1 and @5 on the clean pairs, and `retrieval_asr` on the triggered
    non-target images (None without a trigger). `clip`'s train/eval mode is given back."""
    was_training = clip.model.training
    clip.model.eval()
    try:
        distinct, text_of = distinct_captions(pairs.captions)
        texts = caption_features(clip, distinct)
        images = probe_features(clip, pairs)
        triggered = None
        if trigger is not None:
            triggered = triggered_features(clip, pairs, target, trigger, seed)
    finally:
        clip.model.train(was_training)
    measured: dict[str, float | None] = {}
    for k in RECALL_AT:
        measured[f"i2t_recall_at_{k}"] = image_to_text_recall(images, texts, text_of, k)
        measured[f"t2i_recall_at_{k}"] = text_to_image_recall(images, texts, text_of, k)
    measured["retrieval_asr"] = None
    if triggered is not None and len(triggered):
        target_text = torch.zeros(len(distinct), dtype=torch.bool)
        target_text[text_of[pairs.labels == target]] = True
        measured["retrieval_asr"] = retrieval_attack_success(triggered, texts, target_text)
    return measured
