"""SafeCLIP (Yang et al., ICML 2024), a pretraining defense: warm up on in-modal losses only, so
that each tower learns its modality before any image is tied to any caption; then tie only the
pairs that look safe, and grow that set epoch by epoch.

The authors' code (BigML-CS-UCLA/SafeCLIP, commit 91488ce: src/main.py, src/train.py,
src/samplers.py, src/data.py, utils/augment_image.py) is followed step by step; docs/fidelity.md
lists what differs and what each difference measured. Schedule, in benchbd's one training loop
(an epoch hook decides, the objective applies):

1. `inmodal_epochs`: the in-modal loss on every pair.
2. `clip_epochs`: the CLIP loss on every pair.
3. Every later epoch starts by embedding all pairs with the model as trained so far and
   fitting a two-component `GaussianMixture` (scikit-learn, `random_state` 0 as theirs) on
   their image-caption cosine similarities. LOW similarity is risky: a poisoned pair (an image
   of one class captioned with another) is mismatched before the model learns it. At the first
   such epoch the safe set is every pair whose posterior of the high-similarity component is
   at least `safe_probability` (0.9, theirs: src/main.py line 202); each later epoch it is the
   `fraction` of the pairs most probably safe (ties to the higher similarity), where `fraction`
   starts at the first set's share and grows by `growth` a epoch up to `cap` (their
   `update_filter_ratio` and `cap_filter_ratio`, 0.01 and 0.85 by default: line 215 and
   src/parser.py lines 64 and 67). Safe pairs in a batch get the CLIP loss among themselves,
   the rest the in-modal loss; each term is weighted by its share of the batch.

Losses (their `get_loss`, src/train.py lines 11-83). Every row is seen as two augmented views
of its image (their utils/augment_image.py: flip, random resized crop, colour jitter, grayscale,
blur) and two EDA views of its caption. The in-modal loss is, per modality, InfoNCE of each
second view against the first views of the batch, CE(s * V2 V1^T), averaged over the two
modalities. With `cross_aug` (on, as their default) the CLIP loss ties each image's first view
to the captions' second views and each caption's first view to the images' second views,
(CE(s * I1 T2^T) + CE(s * T1 I2^T)) / 2; without it, the CLIP loss on the batch's own images
and captions (their `--cross_aug` switch).

`start` is benchbd's, not the authors': a smallest first safe set, a share of the pairs (0, off,
by default). Their published code never starts the split from a share: their `filter_ratio`
(0.15) is read only when training resumes from a checkpoint (src/main.py line 125).

Under torchrun each rank's safe and risky rows differ in number, which gathered losses cannot
take: the defense refuses to run there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from benchbd.defenses.cleanclip import SYNONYM_SOURCES, inmodal_loss, resolve_synonyms
from benchbd.defenses.cosine_gmm import high_component_probability, pair_similarities
from torchvision.transforms import v2

from benchbd.api import (
    Batch,
    BenchbdError,
    ClipBundle,
    DefenseContext,
    PairSet,
    Params,
    PretrainingDefense,
    PretrainingHooks,
    TextViews,
    clip_loss,
    param,
    substream,
    world,
)

GMM_SEED = 0  # their fit_gmm_to_cos_sim (src/samplers.py line 151): random_state=0, every epoch


@dataclass(frozen=True)
class SafeCLIPParams(Params):
    inmodal_epochs: int = param(1, "warmup epochs with the in-modal loss only", min=0)
    clip_epochs: int = param(1, "then epochs with the CLIP loss on every pair", min=0)
    safe_probability: float = param(
        0.9, "first safe set: posterior of the high-similarity component at least this",
        min=0.0, max=1.0,
    )  # fmt: skip
    start: float = param(
        0.0, "smallest first safe set, a share of the pairs (benchbd's; not the authors')",
        min=0.0, max=1.0, recorded_at_default=False,
    )  # fmt: skip
    growth: float = param(0.1, "share of the pairs the safe set grows by each epoch", min=0.0)
    cap: float = param(0.9, "largest share of the pairs in the safe set", min=0.0, max=1.0)
    cross_aug: bool = param(
        True, "CLIP loss between each image and its caption's augmented view, and back"
    )
    synonyms: str = param(
        "auto", "EDA synonym source: auto (WordNet if installed), wordnet, dataset",
        choices=SYNONYM_SOURCES,
    )  # fmt: skip


def split_order(similarities: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """Rows from most to least probably safe. Their code sorts the pairs by similarity
    (descending), then by posterior (src/main.py lines 193-198), so equal posteriors (many
    are exactly 1) go to the higher similarity."""
    return np.lexsort((-similarities, -probability))


class SafeSchedule:
    """Which rows are safe at each split epoch, from the pairs' similarities that epoch."""

    def __init__(self, params: SafeCLIPParams) -> None:
        self.params = params
        self.fraction: float | None = None
        self.shares: list[float] = []

    def next_safe(self, similarities: np.ndarray) -> torch.Tensor:
        """One flag per row: at the first split epoch the pairs at posterior `safe_probability`
        or more (or the `start` share, when larger); later the `fraction` most probably safe,
        the mixture fitted anew each epoch."""
        n = len(similarities)
        # Their mixture is fitted on the similarities sorted in descending order (src/main.py
        # lines 193-196); k-means' initial draw depends on the order, so the fit can too.
        by_similarity = np.argsort(-similarities, kind="stable")
        probability = np.empty(n)
        probability[by_similarity] = high_component_probability(
            similarities[by_similarity], GMM_SEED
        )
        order = split_order(similarities, probability)
        if self.fraction is None:
            count = max(int((probability >= self.params.safe_probability).sum()),
                        int(self.params.start * n))  # fmt: skip
            self.fraction = count / n
        else:
            self.fraction = min(self.fraction + self.params.growth, self.params.cap)
            count = int(self.fraction * n)
        safe = torch.zeros(n, dtype=torch.bool)
        safe[torch.from_numpy(order[:count].copy())] = True
        self.shares.append(round(float(safe.float().mean()), 4))
        return safe


class SimCLRViews:
    """Their image augmentation (utils/augment_image.py lines 12-22): horizontal flip, random
    resized crop back to the image's size, colour jitter (0.5, 0.5, 0.5, 0.1) with p 0.8,
    grayscale with p 0.2, Gaussian blur with kernel 21 (or the largest odd size the image
    takes). As `benchbd.engine.augment.ImageViews`, the batch is cut into groups of `group` images,
    each with its own draw, under a seed."""

    def __init__(self, group: int = 8) -> None:
        self.group = group

    def transform(self, size: int) -> v2.Compose:
        kernel = min(21, size - 1 if size % 2 == 0 else size)
        return v2.Compose([
            v2.RandomHorizontalFlip(),
            v2.RandomResizedCrop(size=size),
            v2.RandomApply([v2.ColorJitter(0.5, 0.5, 0.5, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.GaussianBlur(kernel_size=kernel),
        ])  # fmt: skip

    def __call__(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        transform = self.transform(images.shape[-1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.cat([transform(group) for group in torch.split(images, self.group)])


def cross_aug_clip_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    image_views: torch.Tensor,
    text_views: torch.Tensor,
    scale: torch.Tensor,
) -> torch.Tensor:
    """Their cross-augmented CLIP loss (src/train.py lines 59-61 and 79): each image's first
    view against the captions' second views, each caption's first view against the images'
    second views; InfoNCE over the rows of each."""
    return (inmodal_loss(image, text_views, scale) + inmodal_loss(text, image_views, scale)) / 2


def views_inmodal_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    image_views: torch.Tensor,
    text_views: torch.Tensor,
    scale: torch.Tensor,
) -> torch.Tensor:
    """Their in-modal loss (src/train.py lines 55-57 and 76): per modality, each second view
    against the batch's first views, CE(s * V2 V1^T), averaged over the two modalities."""
    return (inmodal_loss(image_views, image, scale) + inmodal_loss(text_views, text, scale)) / 2


class SafeCLIPObjective:
    """Which loss each row gets this epoch (set by `start_epoch`), and the step's loss."""

    def __init__(self, params: SafeCLIPParams, text_views: TextViews, seed: int) -> None:
        self.params = params
        self.image_views = SimCLRViews()
        self.text_views = text_views
        self.seed = seed
        self.phase = "inmodal"
        self.safe: torch.Tensor | None = None  # one flag per row, in the split epochs
        self.schedule = SafeSchedule(params)

    def start_epoch(self, clip: ClipBundle, epoch: int, pairs: PairSet) -> PairSet:
        warmup = self.params.inmodal_epochs
        if epoch < warmup:
            self.phase = "inmodal"
        elif epoch < warmup + self.params.clip_epochs:
            self.phase = "clip"
        else:
            self.phase = "split"
            self.safe = self.schedule.next_safe(pair_similarities(clip, pairs))
        return pairs

    def rows_safe(self, batch: Batch) -> torch.Tensor:
        if self.phase == "split":
            assert self.safe is not None and batch.rows is not None
            return self.safe[batch.rows]
        return torch.full((len(batch.images),), self.phase == "clip")

    def __call__(self, clip: ClipBundle, batch: Batch) -> torch.Tensor:
        safe = self.rows_safe(batch)
        risky = ~safe
        # Rows seen as two views each: all of them with cross_aug, else only the risky ones
        # (the safe ones then take the CLIP loss on the batch's own images and captions).
        viewed = torch.ones_like(safe) if self.params.cross_aug else risky
        step_seed = substream(self.seed, f"safeclip-views:{batch.step}")
        images, captions = (
            batch.images[viewed],
            [c for c, v in zip(batch.captions, viewed.tolist(), strict=True) if v],
        )
        parts, texts = [], []
        if not self.params.cross_aug:
            parts.append(batch.images)
            texts.append(batch.tokens)
        for view in ("1", "2") if int(viewed.sum()) else ():
            view_seed = substream(step_seed, view)
            parts.append(self.image_views(images, view_seed))
            texts.append(clip.tokenize(self.text_views(captions, view_seed)))
        device = next(clip.model.parameters()).device
        out = clip.model(clip.normalize(torch.cat(parts).to(device)), torch.cat(texts).to(device))
        image, text, scale = out["image_features"], out["text_features"], out["logit_scale"]
        n, m = len(batch.images), int(viewed.sum())
        if not self.params.cross_aug:
            plain_image, plain_text = image[:n], text[:n]
            image, text = image[n:], text[n:]
        image1, image2, text1, text2 = image[:m], image[m:], text[:m], text[m:]
        safe, risky = safe.to(device), risky.to(device)
        in_viewed = safe[viewed.to(device)] if self.params.cross_aug else None
        loss = 0 * scale  # a batch with no term still backpropagates (to nothing)
        if int(safe.sum()) >= 2:  # a contrastive term needs a negative
            if self.params.cross_aug:
                s = in_viewed
                term = cross_aug_clip_loss(image1[s], text1[s], image2[s], text2[s], scale)
            else:
                term = clip_loss(plain_image[safe], plain_text[safe], scale)
            loss = loss + safe.float().mean() * term
        if int(risky.sum()) >= 2:
            r = ~in_viewed if self.params.cross_aug else slice(None)
            term = views_inmodal_loss(image1[r], text1[r], image2[r], text2[r], scale)
            loss = loss + risky.float().mean() * term
        return loss


class SafeCLIP(PretrainingDefense):
    description = ("Pretraining: in-modal warmup, then the CLIP loss only on pairs a GMM on "
                   "similarity deems safe (SafeCLIP).")  # fmt: skip
    Params = SafeCLIPParams
    test_params = {"inmodal_epochs": 1, "clip_epochs": 0}

    def check(self, context: DefenseContext) -> None:
        if world().size > 1:  # before pretraining, like every check
            raise BenchbdError("safeclip's split losses are not gathered across ranks: run it "
                               "without torchrun")  # fmt: skip

    def pretraining(self, pairs: PairSet, context: DefenseContext) -> PretrainingHooks:
        synonyms, self.synonym_source = resolve_synonyms(self.params.synonyms, context)
        self.objective = SafeCLIPObjective(self.params, TextViews(synonyms), context.seed)
        return PretrainingHooks(self.objective, self.objective.start_epoch)

    def report(self) -> dict:
        objective = getattr(self, "objective", None)
        return {"safe_fractions": None if objective is None else objective.schedule.shares,
                "synonyms": getattr(self, "synonym_source", None)}  # fmt: skip
