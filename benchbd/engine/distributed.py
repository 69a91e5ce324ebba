"""Data-parallel training across the processes `torchrun --nproc-per-node N -m benchbd run`
starts: every rank holds the whole model and sees its slice of each global batch.

What makes it equal to one process on the global batch (tested on CPU with two gloo ranks):
- the batch order and augmentation draws are the same on every rank (same seed); each rank
  then keeps rows [rank * b / N, (rank + 1) * b / N) of the global batch of b;
- the contrastive loss (`train.clip_loss`, which pretraining and the CleanCLIP-style
  defenses share) is computed over the global batch: features are all-gathered with their
  gradients (open_clip's ClipLoss with gather_with_grad), so every rank sees the same logits
  matrix and the same loss; CleanCLIP's in-modal term gathers its features and views the same
  way (`gathered_with_grad`), as the CleanCLIP reference does; other loss terms (the supervised
  head's cross-entropy) are computed on each rank's slice and averaged through the gradients;
- after each backward the gradients are averaged across ranks in one flattened all-reduce,
  which is what DistributedDataParallel does (it overlaps that with the backward; benchbd's
  objectives call the model's towers directly, which the DDP wrapper would hide);
- batch norm becomes SyncBatchNorm on CUDA (torch implements it for accelerators only; the
  CPU test uses the layer-norm ViT).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from benchbd.core.errors import BenchbdError

if TYPE_CHECKING:
    from benchbd.engine.model import ClipBundle


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This rank's rows of a global batch."""
        if batch_size % self.size:
            raise BenchbdError(f"batch size {batch_size} is not divisible by the {self.size} ranks")
        per = batch_size // self.size
        return slice(self.rank * per, (self.rank + 1) * per)


def world() -> World:
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return World(dist.get_rank(), dist.get_world_size(), local)


def init_from_env() -> World:
    """Join the process group torchrun describes in the environment (a no-op when run plainly).
    NCCL on CUDA, gloo otherwise; each rank takes the GPU of its local rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return world()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return world()


def device_for(requested: str) -> str:
    """'auto' or 'cuda' under torchrun means this rank's own GPU."""
    current = world()
    if current.size > 1 and requested in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{current.local_rank}"
    return requested


def prepare(clip: ClipBundle) -> None:
    """Before data-parallel training: batch norm statistics shared across ranks (CUDA)."""
    device = next(clip.model.parameters()).device
    if device.type == "cuda":
        clip.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(clip.model)


def gathered_clip_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """The CLIP loss over the global batch, from this rank's slice of it (open_clip's ClipLoss:
    all-gather with gradients, full logits matrix on every rank)."""
    from open_clip.loss import ClipLoss

    current = world()
    loss = ClipLoss(
        local_loss=False, gather_with_grad=True, rank=current.rank, world_size=current.size
    )
    with warnings.catch_warnings():  # open_clip still calls the deprecated all_gather
        warnings.simplefilter("ignore", FutureWarning)
        return loss(image_features, text_features, logit_scale)


def gathered_with_grad(
    first: torch.Tensor, second: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both tensors' rows from every rank, in rank order, gathered as `gathered_clip_loss`
    gathers (open_clip's gather_features with gather_with_grad): the backward sums every
    rank's gradient into each rank's own slice, which `average_gradients` then divides by the
    world size, so a loss over the gathered rows trains as it would on the global batch."""
    from open_clip.loss import gather_features

    current = world()
    with warnings.catch_warnings():  # open_clip still calls the deprecated all_gather
        warnings.simplefilter("ignore", FutureWarning)
        return gather_features(
            first, second, gather_with_grad=True, rank=current.rank, world_size=current.size
        )


def average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Mean of every gradient across ranks, in one all-reduce of a flat buffer."""
    size = dist.get_world_size()
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def gather_objects(value: object) -> list:
    """Every rank's `value` (picklable), in rank order, on every rank."""
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar across ranks (for logging a rank-local loss)."""
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()
