"""CLIP models through open_clip, plus benchbd's tiny architectures shipped as config JSONs.

The tiny configs (file stem = model name) are registered with open_clip on import, so
`--model benchbd-rn-tiny` and `--model RN50` go through the same `open_clip.create_model` path.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import get_model_preprocess_cfg

from benchbd.core.errors import BenchbdError
from benchbd.core.suggest import did_you_mean
from benchbd.engine.pretrained import is_path, load_weights, pretrained_file

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
DEFAULT_MODEL = "benchbd-rn-tiny"
TOKEN_CACHE_SIZE = 200_000  # distinct captions remembered per model (a few tens of MB)

open_clip.add_model_config(MODEL_CONFIG_DIR)


def available_models() -> list[str]:
    return list(open_clip.list_models())


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when present; anything else is passed to torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise BenchbdError(f"unknown device {device!r}: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BenchbdError(f"device {device!r} requested but CUDA is not available here")
    return resolved


@dataclass
class ClipBundle:
    """A CLIP model with what it needs around it: its tokenizer and pixel normalisation."""

    name: str
    model: torch.nn.Module
    tokenizer: open_clip.tokenizer.SimpleTokenizer
    mean: torch.Tensor  # (1, 3, 1, 1) in [0, 1] units
    std: torch.Tensor
    image_size: int
    # A classification head on the image features (supervised defenses); when present it,
    # not the zero-shot text classifier, measures CA and ASR.
    head: torch.nn.Module | None = None
    _tokens: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def tokenize(self, captions: list[str]) -> torch.Tensor:
        """Token ids, (N, context_length). Each distinct caption is tokenised once and
        remembered: open_clip's text cleaning costs ~0.2 ms a caption, a sixth of a CleanCLIP
        step when every step brings 128 augmented captions, and captions repeat."""
        if not captions:
            return self.tokenizer([])
        new = [c for c in dict.fromkeys(captions) if c not in self._tokens]
        fresh = dict(zip(new, self.tokenizer(new), strict=True)) if new else {}
        if len(self._tokens) + len(fresh) <= TOKEN_CACHE_SIZE:
            self._tokens.update(fresh)
        return torch.stack([fresh[c] if c in fresh else self._tokens[c] for c in captions])

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) on any device -> float input for the image tower."""
        return self.normalize_float(images.float().div_(255.0))

    def normalize_float(self, x: torch.Tensor) -> torch.Tensor:
        """Images as floats in [0, 1] -> input for the image tower (differentiable), in the
        channels-last layout the tower's weights use (see create_clip)."""
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        return x.contiguous(memory_format=torch.channels_last)


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip warns on every randomly initialised model; from scratch is benchbd's default."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def image_size(name: str = DEFAULT_MODEL) -> int:
    """The side of the images `name` takes, read from its config without building the model:
    the data is loaded at this size before any model exists (the size `create_clip` reports,
    since open_clip sizes a model's preprocessing from the same config entry)."""
    if name not in open_clip.list_models():
        raise BenchbdError(f"unknown model {name!r}{did_you_mean(name, available_models())}")
    size = (open_clip.get_model_config(name) or {}).get("vision_cfg", {}).get("image_size")
    if size is None:  # a config that leaves it to the tower's code: ask the model itself
        return create_clip(name).image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def create_clip(
    name: str = DEFAULT_MODEL,
    seed: int = 0,
    device: str | torch.device = "cpu",
    pretrained: str | None = None,
):
    """A model: freshly initialised and seeded (same seed, same weights), or with `pretrained`
    weights: an open_clip tag for this model (from the local cache) or a checkpoint file."""
    if name not in open_clip.list_models():
        raise BenchbdError(f"unknown model {name!r}{did_you_mean(name, available_models())}")
    weights = pretrained_file(name, pretrained) if pretrained else None
    with torch.random.fork_rng(devices=[]), _quiet_open_clip():
        torch.manual_seed(seed)
        model = open_clip.create_model(name, pretrained=None, output_dict=True, device=device)
    cfg = dict(get_model_preprocess_cfg(model))
    if weights is not None:
        load_weights(model, weights)
        tag_cfg = {} if is_path(pretrained) else open_clip.get_pretrained_cfg(name, pretrained)
        cfg.update({k: tag_cfg[k] for k in ("mean", "std") if k in tag_cfg})
    # Convolutions in channels-last layout: a CPU training step of the tiny ResNet is 1.12x
    # faster (benchmarks/thread_split.py), and on CUDA it is the layout tensor cores want.
    # Only 4-D weights change layout.
    model = model.to(memory_format=torch.channels_last)
    mean = torch.tensor(cfg.get("mean", OPENAI_DATASET_MEAN)).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", OPENAI_DATASET_STD)).view(1, 3, 1, 1)
    size = cfg.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    return ClipBundle(name, model, open_clip.get_tokenizer(name), mean, std, size)
