"""The one training loop: poisoned pretraining and every finetuning defense run through it.

What it gets right that research code often does not: AdamW with no weight decay on biases,
norms and the logit scale; a linear warmup that really warms up followed by a cosine that ends
exactly at the last step; the logit scale clamped at 100; a fresh optimizer for every stage;
everything seeded. Images stay uint8 until a batch is drawn, then are augmented and normalised
as a batch, so the loop never decodes a file.

A defense that shapes pretraining does it through this loop, not a second one: its objective,
and an `EpochHook` called at each epoch's start that may change the pairs the epoch sees
(RoCLIP's and SafeCLIP's per-epoch choices). Without a hook the loop is exactly what it was.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from benchbd.core.checks import check_fields
from benchbd.core.errors import BenchbdError
from benchbd.core.results import OMITTED_AT_DEFAULT
from benchbd.core.seeds import substream
from benchbd.engine import distributed
from benchbd.engine.data.images import is_streamed, release_freed_memory, stream
from benchbd.engine.data.pairs import PairSet
from benchbd.engine.model import ClipBundle
from benchbd.engine.step_report import ProgressFn, StepReport

LOGIT_SCALE_MAX = math.log(100.0)
# Recipe settings a fingerprint or result file holds only when they differ from their default:
# the result schema's list (benchbd.core.results.OMITTED_AT_DEFAULT), its "pretrain.*" entries.
RECIPE_OMITTED_AT_DEFAULT: dict[str, object] = {
    path.removeprefix("pretrain."): default
    for path, default in OMITTED_AT_DEFAULT.items()
    if path.startswith("pretrain.")
}


SCHEDULES = ("cosine", "linear-cosine")


@dataclass(frozen=True)
class TrainConfig:
    """One training stage's recipe. Part of every fingerprint and result file."""

    epochs: float = 8.0
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    shift: float = 0.0625  # random translation, as a fraction of the image side
    # Weight of the in-modal self-supervised terms added to the CLIP loss (engine.objectives):
    # 0 is the CLIP loss alone. Recorded only when set (see `to_dict`).
    inmodal_weight: float = 0.0
    # The learning rate's shape over the steps (`lr_at`; SCHEDULES). Recorded only when set.
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        check_fields(self, owner="the training recipe")
        if self.epochs <= 0 or self.batch_size < 2 or self.lr <= 0:
            raise BenchbdError("epochs and lr must be positive and batch_size at least 2")
        if self.weight_decay < 0 or self.warmup_steps < 0 or not 0 <= self.shift < 0.5:
            raise BenchbdError("weight_decay and warmup_steps must be >= 0, shift in [0, 0.5)")
        if self.schedule not in SCHEDULES:
            raise BenchbdError(f"schedule must be one of {', '.join(SCHEDULES)}, "
                               f"not {self.schedule!r}")  # fmt: skip
        if self.inmodal_weight < 0:
            raise BenchbdError(f"inmodal_weight must be >= 0 (0: the CLIP loss alone), "
                               f"got {self.inmodal_weight:g}")  # fmt: skip

    @classmethod
    def from_recipe(cls, recipe: object) -> TrainConfig:
        """A stage's config from any object with the recipe's fields (a defense's Params)."""
        names = ("epochs", "batch_size", "lr", "weight_decay", "warmup_steps")
        return cls(**{name: getattr(recipe, name) for name in names})

    def steps(self, n_pairs: int) -> int:
        """Optimizer steps for n_pairs; the last partial batch is dropped (contrastive batches
        must be full-sized for a stable loss)."""
        per_epoch = max(1, n_pairs // self.batch_size)
        return max(1, round(self.epochs * per_epoch))

    def to_dict(self) -> dict:
        """The recipe as fingerprints and result files hold it. A setting added after result
        files were first written (RECIPE_OMITTED_AT_DEFAULT) is left out at its default, so every
        fingerprint and file made before it stays as it was."""
        recipe = asdict(self)
        for name, default in RECIPE_OMITTED_AT_DEFAULT.items():
            if recipe[name] == default:
                del recipe[name]
        return recipe


@dataclass
class Batch:
    """What a loss sees: the augmented uint8 images, their captions, and tokenised captions."""

    images: torch.Tensor
    captions: list[str]
    tokens: torch.Tensor
    labels: torch.Tensor
    step: int
    # The batch's row indices into the pairs being trained on, and its epoch (0-based): what an
    # objective needs to treat rows by what an epoch hook decided about them.
    rows: torch.Tensor | None = None
    epoch: int = 0


class Objective(Protocol):
    def __call__(self, clip: ClipBundle, batch: Batch) -> torch.Tensor: ...


class EpochHook(Protocol):
    """Called at the start of every epoch (0-based), in eval mode and under `torch.no_grad()`,
    with the model as trained so far and the pairs training started with. Returns the pairs
    this epoch trains on: the same rows in the same order (captions may differ), or `pairs`."""

    def __call__(self, clip: ClipBundle, epoch: int, pairs: PairSet) -> PairSet: ...


def clip_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of matched pairs (features already L2-normalised).
    Under torchrun, over the global batch: every rank's features, gathered with gradients."""
    if distributed.world().size > 1:
        return distributed.gathered_clip_loss(image_features, text_features, logit_scale)
    logits = logit_scale * image_features @ text_features.T
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def contrastive_objective(clip: ClipBundle, batch: Batch) -> torch.Tensor:
    """The CLIP loss: what pretraining and plain finetuning minimise."""
    device = next(clip.model.parameters()).device
    out = clip.model(clip.normalize(batch.images.to(device)), batch.tokens.to(device))
    return clip_loss(out["image_features"], out["text_features"], out["logit_scale"])


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float):
    """AdamW; biases, norm weights, embeddings' gains and the logit scale get no weight decay."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim < 2 or "logit_scale" in name or "bn" in name or "ln" in name
        (no_decay if exempt else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = all(p.device.type in ("cpu", "cuda") for group in groups for p in group["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6, fused=fused)


def lr_at(step: int, total: int, base_lr: float, warmup: int, schedule: str = "cosine") -> float:
    """The learning rate of 0-based `step` of `total`.

    "cosine" (every recipe's): a linear warmup from base_lr/warmup to base_lr over `warmup`
    steps, then a cosine that reaches zero after the final step. "linear-cosine" (the shape of
    PAR's `train.py`, `utils.cosine_scheduler` with one of two epochs of "warmup" from its
    --lr-start 3e-5 down to its --lr 3e-6, final 1e-9; kept to measure what benchbd's one shape
    changes): no warmup; base_lr falls linearly to base_lr / 10 over the first half of the
    steps, then a cosine from there to base_lr / 30,000 over the second half."""
    if schedule == "linear-cosine":
        half, low, final = total // 2, base_lr / 10, base_lr / 30_000
        if step < half:
            return base_lr + (low - base_lr) * step / max(1, half - 1)
        progress = (step - half) / max(1, total - half)
        return final + 0.5 * (low - final) * (1 + math.cos(math.pi * progress))
    warmup = min(warmup, total // 2)
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * progress))


def random_shift(images: torch.Tensor, fraction: float, generator: torch.Generator):
    """Translate each image by up to fraction * side pixels (edge-replicated): per batch, no PIL."""
    pad = int(round(fraction * images.shape[-1]))
    if pad == 0:
        return images
    b = images.shape[0]
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    return shift_by(images, pad, dy, dx)


def shift_by(images: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor):
    """Translate image i by (dy[i] - pad, dx[i] - pad) pixels, edges replicated."""
    b, _, h, w = images.shape
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="replicate").to(images.dtype)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, :]
    out = padded[torch.arange(b)[:, None, None], :, rows, cols]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def train(
    clip: ClipBundle,
    pairs: PairSet,
    config: TrainConfig,
    seed: int,
    objective: Objective = contrastive_objective,
    stage: str = "train",
    progress: ProgressFn | None = None,
    trainable: torch.nn.Module | None = None,
    epoch_start: EpochHook | None = None,
) -> list[float]:
    """Train `clip.model` in place on `pairs`; returns the loss of every step.

    A fresh optimizer and schedule every call: stages never share optimizer state.
    `trainable` names the module whose parameters are optimised (default: the whole model),
    for a defense that trains a tower plus a head. `epoch_start` lets a pretraining defense
    choose each epoch's pairs (see `EpochHook`); it draws nothing from the loop's generator, so
    the batch order and shifts are those of a run without it. Pairs held in memory are batched
    by indexing; pairs read from disk (`StreamedPairSet`) are decoded by loader workers. Under
    torchrun each rank trains on its slice of every global batch (benchbd.engine.distributed).
    """
    if len(pairs) < config.batch_size:
        raise ValueError(
            f"{stage}: {len(pairs)} pairs is fewer than one batch of {config.batch_size}"
        )
    current = distributed.world()
    if current.size > 1:
        current.rows(config.batch_size)  # checks that the batch splits evenly
        distributed.prepare(clip)
    model = clip.model
    device = next(model.parameters()).device
    optimizer = build_optimizer(trainable or model, config.lr, config.weight_decay)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    total = config.steps(len(pairs))
    epochs = EpochPairs(clip, pairs, epoch_start)
    if is_streamed(pairs):
        batches = streamed_batches(clip, pairs, config, total, seed, current, epochs)
    else:
        batches = memory_batches(clip, pairs, config, total, seed, current, epochs)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    losses: list[float] = []
    model.train()
    if trainable is not None:
        trainable.train()
    start = time.perf_counter()
    for batch in batches:
        step = batch.step
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, config.lr, config.warmup_steps, config.schedule)
        with autocast:
            loss = objective(clip, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{stage}: loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if current.size > 1:
            distributed.average_gradients(parameters)
            loss = distributed.mean(loss)  # the same on every rank for gathered CLIP losses
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, LOGIT_SCALE_MAX)
        losses.append(loss.item())
        if progress is not None:
            elapsed = time.perf_counter() - start
            rate = (step + 1) * config.batch_size / max(elapsed, 1e-9)
            progress(StepReport(stage, step + 1, total, losses[-1], rate))
    model.eval()
    if trainable is not None:
        trainable.eval()
    return losses


class EpochPairs:
    """The pairs each epoch trains on: the pairs given, or what the epoch hook returns at the
    epoch's start (checked to keep the rows; the model is put back in training mode after)."""

    def __init__(self, clip: ClipBundle, pairs: PairSet, hook: EpochHook | None) -> None:
        self.clip, self.pairs, self.hook = clip, pairs, hook

    def at(self, epoch: int) -> PairSet:
        if self.hook is None:
            return self.pairs
        model = self.clip.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            chosen = self.hook(self.clip, epoch, self.pairs)
        model.train(was_training)
        if len(chosen) != len(self.pairs):
            raise BenchbdError(f"an epoch hook returned {len(chosen)} pairs for "
                               f"{len(self.pairs)}: it may change captions, not rows")  # fmt: skip
        return chosen


def _local(batch: Batch, rows: slice | None) -> Batch:
    if rows is None:
        return batch
    return Batch(batch.images[rows], batch.captions[rows], batch.tokens[rows],
                 batch.labels[rows], batch.step, None if batch.rows is None
                 else batch.rows[rows], batch.epoch)  # fmt: skip


def memory_batches(clip, pairs: PairSet, config: TrainConfig, total: int, seed: int, world,
                   epochs: EpochPairs | None = None):  # fmt: skip
    """Batches of in-memory pairs: one seeded generator draws each epoch's order and each
    batch's shifts, then (under torchrun) each rank keeps its rows of the global batch."""
    generator = torch.Generator().manual_seed(seed)
    tokens = clip.tokenize(pairs.captions)
    per_epoch = max(1, len(pairs) // config.batch_size)
    rows = world.rows(config.batch_size) if world.size > 1 else None
    order = torch.empty(0, dtype=torch.long)
    current = pairs
    for step in range(total):
        if step % per_epoch == 0:
            if epochs is not None and epochs.hook is not None:
                current = epochs.at(step // per_epoch)
                tokens = clip.tokenize(current.captions)
            order = torch.randperm(len(pairs), generator=generator)
        offset = (step % per_epoch) * config.batch_size
        index = order[offset : offset + config.batch_size]
        batch = Batch(
            images=random_shift(current.images[index], config.shift, generator),
            captions=[current.captions[i] for i in index.tolist()],
            tokens=tokens[index],
            labels=current.labels[index],
            step=step,
            rows=index,
            epoch=step // per_epoch,
        )
        yield _local(batch, rows)


class EpochOrder:
    """The batch sampler of streamed training: a fresh seeded permutation per epoch, full
    batches only, this rank's rows of each (the same global order on every rank)."""

    def __init__(self, n: int, batch_size: int, total: int, seed: int, rows: slice) -> None:
        self.n, self.batch_size, self.total, self.seed, self.rows = n, batch_size, total, seed, rows

    def __len__(self) -> int:
        return self.total

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        per_epoch = max(1, self.n // self.batch_size)
        order = torch.empty(0, dtype=torch.long)
        for step in range(self.total):
            if step % per_epoch == 0:
                order = torch.randperm(self.n, generator=generator)
            offset = (step % per_epoch) * self.batch_size
            yield order[offset : offset + self.batch_size][self.rows].tolist()


def streamed_batches(clip, pairs: PairSet, config: TrainConfig, total: int, seed: int, world,
                     epochs: EpochPairs | None = None):  # fmt: skip
    """Batches of pairs read from disk, decoded by loader workers. Shifts are drawn for the
    whole global batch so every rank agrees with one process, from their own named substream
    of the seed (the batch order draws from the seed itself). An epoch hook chooses captions;
    the images are always the ones on disk (with the attack's overlay)."""
    rows = world.rows(config.batch_size) if world.size > 1 else slice(None)
    sampler = EpochOrder(len(pairs), config.batch_size, total, seed, rows)
    shifts = torch.Generator().manual_seed(substream(seed, "shifts"))
    pad = int(round(config.shift * pairs.image_size))
    per_epoch = max(1, len(pairs) // config.batch_size)
    current = pairs
    for step, (images, positions) in enumerate(stream(pairs.images, sampler)):
        if step % 16 == 15:
            release_freed_memory()
        if step % per_epoch == 0 and epochs is not None and epochs.hook is not None:
            current = epochs.at(step // per_epoch)
        if pad:
            dy = torch.randint(0, 2 * pad + 1, (config.batch_size,), generator=shifts)[rows]
            dx = torch.randint(0, 2 * pad + 1, (config.batch_size,), generator=shifts)[rows]
            images = shift_by(images, pad, dy, dx)
        captions = [current.captions[i] for i in positions]
        yield Batch(images, captions, clip.tokenize(captions), pairs.labels[positions], step,
                    torch.as_tensor(positions, dtype=torch.long), step // per_epoch)  # fmt: skip
