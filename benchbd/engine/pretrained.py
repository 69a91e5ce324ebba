"""Pretrained weights: an open_clip tag (`--pretrained openai`) or a checkpoint file.

A tag is looked up where open_clip would download it to (the Hugging Face hub cache, or
`~/.cache/clip` for plain URLs). When the file is not there and there is no network, the error
says so at once (instead of open_clip's minute of retries) and says how to provide the file.
Checkpoints always load with `weights_only=True`: a weights file can never run code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from urllib.parse import urlparse

import open_clip
import torch

from benchbd.core.cache import file_hash
from benchbd.core.errors import BenchbdError
from benchbd.core.network import no_network
from benchbd.core.suggest import did_you_mean

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def is_path(value: str) -> bool:
    return os.sep in value or value.endswith(WEIGHT_SUFFIXES) or Path(value).exists()


def hf_cache() -> Path:
    """The hub cache as huggingface_hub resolves it, read now (tests and users may set it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(home).expanduser() / "hub"


def url_cache() -> Path:
    return Path.home() / ".cache" / "clip"


def _hf_target(cfg: dict) -> tuple[str, list[str]]:
    """(repo, candidate file names) of a hub entry, safetensors first as open_clip does."""
    repo, filename = os.path.split(cfg["hf_hub"])
    filename = filename or "open_clip_pytorch_model.bin"
    stem, suffix = os.path.splitext(filename)
    names = [stem + ".safetensors"] if suffix in (".bin", ".pth") else []
    if filename == "open_clip_pytorch_model.bin":
        names = ["open_clip_model.safetensors"]
    return repo, [*names, filename]


def pretrained_file(name: str, pretrained: str) -> Path:
    """The local file holding these weights; downloaded only when the network is there."""
    if is_path(pretrained):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise BenchbdError(f"checkpoint file {pretrained!r} does not exist")
        return path
    cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        known = f" (tags: {', '.join(tags)})" if tags else " (it has no pretrained tags)"
        raise BenchbdError(
            f"model {name!r} has no pretrained tag {pretrained!r}"
            f"{did_you_mean(pretrained, tags)}{known}; or pass a checkpoint path"
        )
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo, names = _hf_target(cfg)
        for filename in names:
            hit = try_to_load_from_cache(repo, filename, cache_dir=str(hf_cache()))
            if isinstance(hit, str):
                return Path(hit)
        host, where = "huggingface.co", f"https://huggingface.co/{repo}/resolve/main/{names[-1]}"
        place = f"copy a Hugging Face cache holding {repo} into {hf_cache()}"
    else:
        url = cfg.get("url", "")
        local = url_cache() / os.path.basename(url)
        if local.is_file():
            return local
        host, where, place = urlparse(url).hostname or "", url, f"put it in {url_cache()}/"
    if no_network(host):
        raise BenchbdError(
            f"pretrained weights {name}/{pretrained} are not in the local cache and cannot be "
            f"downloaded (no network): fetch {where} elsewhere and pass --pretrained "
            f"/path/to/file, or {place}"
        )
    try:
        return Path(open_clip.download_pretrained(cfg, cache_dir=None))
    except Exception as exc:  # network errors come in many types; one line names the cause
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BenchbdError(f"downloading {name}/{pretrained} failed: {first[:200]}") from None


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """open_clip's checkpoint loading (state-dict conversions, position-embedding resizing),
    always with weights_only=True."""
    try:
        open_clip.load_checkpoint(model, str(path), weights_only=True)
    except pickle.UnpicklingError:  # torch's own message suggests weights_only=False: never
        raise BenchbdError(
            f"refused to load {path.name}: it holds objects other than tensors, and checkpoints "
            "load with weights_only=True so that a file can never run code; save a plain "
            "state dict of tensors instead"
        ) from None
    except (RuntimeError, KeyError, ValueError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchbdError(f"cannot load {path.name} into this model: {first[:300]}") from None


def pretrained_key(pretrained: str) -> str:
    """What identifies pretrained weights in a fingerprint: the tag, or the file's content."""
    if not is_path(pretrained):
        return pretrained
    return f"file:{file_hash(Path(pretrained).expanduser())}"
