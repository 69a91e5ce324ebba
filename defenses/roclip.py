"""RoCLIP (Yang, Gao and Mirzasoleiman, NeurIPS 2023), a pretraining defense: in every K-th
epoch each image is matched, instead of with its own caption, with the caption nearest to it
in a pool of captions; in every epoch images and captions are augmented.

As the public code (BigML-CS-UCLA/RoCLIP, model/src/train.py `get_loss`, model/src/
memory_bank.py, lightly's MemoryBankModule) does it:

- Matching epochs are the 1-based epochs e with e % K == 0 (K = `break_epoch`, 2): with
  K = 2 the last epoch of an even count matches, and that epoch's model is the one evaluated.
- The pool is a ring of `pool` caption embeddings started as random unit vectors. In a
  matching step the batch's images are first matched against the pool as it stands (cosine,
  argmax), then the step's caption embeddings (detached) are written at the ring's pointer;
  a batch that reaches the ring's end fills it and its rest is dropped, the pointer back at
  0. Other epochs neither read nor write the pool: it holds the captions of the last matching
  epoch, and its first matches are with noise.
- The matched loss: with p_i the pool's nearest caption to image i, the symmetric
  cross-entropy of s * P_p I^T with labels arange(batch). The captions' own term enters with
  weight 0: the text tower gets zero gradients (not none), so AdamW's momentum and weight decay
  still move it in matching steps, as they do in the public code. Other epochs: the CLIP loss.
- Augmentation (`cross_aug`): every image is replaced by a new random view at every step
  (`benchbd.defenses.roclip_views`), every caption by one EDA view drawn once, before training, used
  in every epoch (the public code augments its captions when it builds the dataset).

A pool entry also keeps the class its caption names (by the task's class names and synonyms;
none for noise or a caption whose class word EDA removed), so that each matching epoch records
the share of images matched to a caption that names their own class; the zero-shot accuracy on
the defender's clean pairs is recorded after every epoch. A collapse of the matching is then
measured, not guessed (`extra.defense_report`). Under torchrun the matched loss would be over
each rank's slice: the defense refuses to run there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from benchbd.defenses.cleanclip import SYNONYM_SOURCES, resolve_synonyms
from benchbd.defenses.roclip_views import RoCLIPImageViews

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
    ZeroShotTask,
    clean_accuracy,
    clip_loss,
    param,
    predict,
    substream,
    world,
    zero_shot_weights,
)

NO_CLASS = -1  # a pool entry whose caption names no class (the pool's first noise, say)


@dataclass(frozen=True)
class RoCLIPParams(Params):
    every: int = param(2, "match with the pool's nearest caption in every K-th epoch", min=1)
    pool: int = param(1024, "caption embeddings the pool (a ring) holds", min=1)
    augment: bool = param(True, "a new image view every step, one EDA caption view per pair")
    synonyms: str = param(
        "auto", "EDA synonym source: auto (WordNet if installed), wordnet, dataset",
        choices=SYNONYM_SOURCES,
    )  # fmt: skip
    # chosen on the digits validation split (results/validation/roclip, docs/defaults.md)
    lr: float | None = param(1e-3, "peak learning rate (None: the run's pretraining recipe)",
                             min=0.0)  # fmt: skip
    warmup_steps: int | None = param(
        100, "linear warm-up steps (None: the run's pretraining recipe)", min=0
    )


def is_matching_epoch(epoch: int, every: int) -> bool:
    """Whether the 0-based `epoch` matches: the public code's 1-based e % K == 0."""
    return (epoch + 1) % every == 0


class CaptionPool:
    """A ring of caption embeddings and the class each caption names, started as random unit
    vectors (lightly's MemoryBankModule, as the public code uses it)."""

    def __init__(self, size: int, dim: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.bank = F.normalize(torch.randn(size, dim, generator=generator), dim=1)
        self.classes = torch.full((size,), NO_CLASS, dtype=torch.long)
        self.pointer = 0

    @property
    def size(self) -> int:
        return len(self.bank)

    def nearest(self, queries: torch.Tensor) -> torch.Tensor:
        """Each query's most similar pool entry (cosine), as an index into the pool."""
        bank = F.normalize(self.bank.to(queries.device, torch.float32), dim=1)
        return (F.normalize(queries.detach().float(), dim=1) @ bank.T).argmax(dim=1)

    def push(self, features: torch.Tensor, classes: torch.Tensor) -> None:
        """Write a batch at the pointer; at the ring's end only what fits, pointer back to 0."""
        features = features.detach().float().cpu()
        n, start = len(features), self.pointer
        if start + n >= self.size:
            kept = self.size - start
            self.bank[start:] = features[:kept]
            self.classes[start:] = classes[:kept]
            self.pointer = 0
        else:
            self.bank[start : start + n] = features
            self.classes[start : start + n] = classes
            self.pointer = start + n


def matched_loss(image: torch.Tensor, matched: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """RoCLIP's loss: each image against the pool captions matched to the batch's images,
    its own match the positive, both directions."""
    logits = scale * matched @ image.T
    labels = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


@dataclass(frozen=True)
class Matched:
    """A matching step's pool indices, and the classes those captions named."""

    index: torch.Tensor
    classes: torch.Tensor


def roclip_step(pool: CaptionPool, image: torch.Tensor, text: torch.Tensor,
                scale: torch.Tensor, classes: torch.Tensor,
                matching: bool) -> tuple[torch.Tensor, Matched | None]:  # fmt: skip
    """One step's loss, and in a matching step what the images were matched to: the pool is
    read before this step's captions (naming `classes`) are written to it."""
    if not matching:
        return clip_loss(image, text, scale), None
    index = pool.nearest(image)
    found = Matched(index.cpu(), pool.classes[index.cpu()].clone())
    matched = pool.bank[index.cpu()].to(image.device, image.dtype)
    labels = torch.arange(len(image), device=image.device)
    own = F.cross_entropy(scale * image @ text.T, labels)  # weight 0: zero text gradients
    loss = matched_loss(image, matched, scale) + 0 * own
    pool.push(text, classes)
    return loss, found


def caption_classes(captions: list[str], task: ZeroShotTask) -> torch.Tensor:
    """The class each caption names (its first class word, by the task's names and
    synonyms), NO_CLASS for a caption that names none."""
    words = {name.lower(): index for index, cls in enumerate(task.classnames)
             for name in task.names_for(cls)}  # fmt: skip
    found = []
    for caption in captions:
        named = [words[w] for w in caption.lower().split() if w in words]
        found.append(named[0] if named else NO_CLASS)
    return torch.tensor(found, dtype=torch.long)


class RoCLIPObjective:
    """The loss of one step, the epoch hook (which epoch matches, the captions it sees) and
    what the run records of both."""

    def __init__(self, params: RoCLIPParams, pairs: PairSet, context: DefenseContext,
                 text_views: TextViews | None) -> None:  # fmt: skip
        self.every = params.every
        self.size = params.pool
        self.seed = context.seed
        self.task = context.task
        self.clean = context.clean
        self.pool: CaptionPool | None = None
        self.image_views = RoCLIPImageViews() if params.augment else None
        self.pairs = pairs
        if text_views is not None:  # one view per caption, for the whole run
            captions = text_views(pairs.captions, substream(context.seed, "roclip-captions"))
            self.pairs = pairs.with_changes(captions=captions)
        self.classes = caption_classes(self.pairs.captions, context.task)
        self.matching = False
        self.matched_steps = 0
        self.matching_epochs: list[int] = []
        self.own_class: list[float] = []  # per matching epoch
        self.clean_ca: list[float] = []  # after every epoch
        self._hits = self._seen = 0

    def start_epoch(self, clip: ClipBundle, epoch: int, pairs: PairSet) -> PairSet:
        if epoch > 0:
            self.end_epoch(clip)
        self.matching = is_matching_epoch(epoch, self.every)
        if self.matching:
            self.matching_epochs.append(epoch + 1)
        return self.pairs

    def end_epoch(self, clip: ClipBundle) -> None:
        """Close the epoch's records: its matched share, and clean accuracy after it."""
        if self.matching and self._seen:
            self.own_class.append(self._hits / self._seen)
        self._hits = self._seen = 0
        if isinstance(self.clean.images, torch.Tensor):  # clean pairs read from disk: not kept
            self.clean_ca.append(zero_shot_accuracy(clip, self.clean, self.task))

    def __call__(self, clip: ClipBundle, batch: Batch) -> torch.Tensor:
        device = next(clip.model.parameters()).device
        images = batch.images
        if self.image_views is not None:
            images = self.image_views(images, substream(self.seed, f"roclip-views:{batch.step}"))
        out = clip.model(clip.normalize(images.to(device)), batch.tokens.to(device))
        image, text, scale = out["image_features"], out["text_features"], out["logit_scale"]
        if self.pool is None:
            self.pool = CaptionPool(self.size, image.shape[1], substream(self.seed, "roclip-pool"))
        rows = batch.rows if batch.rows is not None else torch.arange(len(image))
        loss, matched = roclip_step(self.pool, image, text, scale, self.classes[rows],
                                    self.matching)  # fmt: skip
        if matched is not None:
            self.matched_steps += 1
            labelled = batch.labels >= 0
            self._hits += int((matched.classes == batch.labels)[labelled].sum())
            self._seen += int(labelled.sum())
        return loss


def zero_shot_accuracy(clip: ClipBundle, pairs: PairSet, task: ZeroShotTask) -> float:
    """Zero-shot accuracy of `clip` on labelled pairs (the defender's clean split)."""
    was_training = clip.model.training
    clip.model.eval()
    with torch.no_grad():
        predictions = predict(clip, pairs.images, zero_shot_weights(clip, task))
    clip.model.train(was_training)
    return clean_accuracy(predictions, pairs.labels)


class RoCLIP(PretrainingDefense):
    description = "Pretraining: match images with the nearest pool caption every K epochs (RoCLIP)."
    Params = RoCLIPParams
    test_params = {"pool": 64, "warmup_steps": 2}

    def check(self, context: DefenseContext) -> None:
        if world().size > 1:  # before pretraining, like every check
            raise BenchbdError("roclip's matched loss is not gathered across ranks: run it "
                               "without torchrun")  # fmt: skip

    def pretraining(self, pairs: PairSet, context: DefenseContext) -> PretrainingHooks:
        views = None
        if self.params.augment:
            synonyms, self.synonym_source = resolve_synonyms(self.params.synonyms, context)
            views = TextViews(synonyms)
        self.objective = RoCLIPObjective(self.params, pairs, context, views)
        recipe = {name: getattr(self.params, name) for name in ("lr", "warmup_steps")
                  if getattr(self.params, name) is not None}  # fmt: skip
        return PretrainingHooks(self.objective, self.objective.start_epoch, recipe)

    def apply(self, clip: ClipBundle, context: DefenseContext) -> ClipBundle:
        objective = getattr(self, "objective", None)
        if objective is not None:  # trained in this run (not loaded): close the last epoch
            objective.end_epoch(clip)
        return clip

    def report(self) -> dict:
        objective = getattr(self, "objective", None)
        if objective is None:  # the defended model came from the cache: nothing was trained
            return {"trained": False, "synonyms": getattr(self, "synonym_source", None)}
        return {"trained": True, "matched_steps": objective.matched_steps,
                "synonyms": getattr(self, "synonym_source", None),
                "matching_epochs": objective.matching_epochs,
                "matched_own_class": objective.own_class,
                "clean_ca": objective.clean_ca}  # fmt: skip
