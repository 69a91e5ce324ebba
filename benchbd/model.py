"""CLIP models through open_clip, plus benchbd's tiny architectures shipped as config JSONs.

The tiny configs (file stem = model name) are registered with open_clip on import, so
`--model benchbd-rn-tiny` and `--model RN50` go through the same `open_clip.create_model` path.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import get_model_preprocess_cfg

from benchbd.errors import BenchbdError
from benchbd.pretrained import is_path, load_weights, pretrained_file
from benchbd.suggest import did_you_mean

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
DEFAULT_MODEL = "benchbd-rn-tiny"

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

    def tokenize(self, captions: list[str]) -> torch.Tensor:
        return self.tokenizer(captions)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) on any device -> float input for the image tower."""
        return self.normalize_float(images.float().div_(255.0))

    def normalize_float(self, x: torch.Tensor) -> torch.Tensor:
        """Images as floats in [0, 1] -> input for the image tower (differentiable)."""
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip warns on every randomly initialised model; from scratch is benchbd's default."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


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
    mean = torch.tensor(cfg.get("mean", OPENAI_DATASET_MEAN)).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", OPENAI_DATASET_STD)).view(1, 3, 1, 1)
    size = cfg.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    return ClipBundle(name, model, open_clip.get_tokenizer(name), mean, std, size)
