"""Pretrained weights: local checkpoints, the open_clip cache, the offline error, and the
paper's second setting (poisoning pretrained weights by finetuning them)."""

from __future__ import annotations

import pytest
import torch
from conftest import write_folder, write_pairs

from benchbd.core.cache import cache_dir, fingerprint
from benchbd.core.errors import BenchbdError
from benchbd.core.seeds import substream
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data
from benchbd.engine.evaluate import evaluate
from benchbd.engine.model import create_clip
from benchbd.engine.model_cache import MODEL_CACHE_VERSION
from benchbd.engine.pipeline import run
from benchbd.engine.planning import build_attack, poisoned_fingerprint
from benchbd.engine.pretrained import pretrained_file
from benchbd.engine.run_config import RunConfig
from benchbd.engine.train import TrainConfig


@pytest.fixture
def checkpoint(tmp_path):
    """A tiny model's weights, different from any seed's initialisation."""
    clip = create_clip("benchbd-rn-tiny", seed=5)
    with torch.no_grad():
        clip.model.logit_scale.fill_(1.234)
    path = tmp_path / "tiny.pt"
    torch.save(clip.model.state_dict(), path)
    return path, clip.model.state_dict()


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_local_checkpoint_loads(checkpoint):
    path, state = checkpoint
    clip = create_clip("benchbd-rn-tiny", seed=0, pretrained=str(path))
    assert same_weights(clip.model.state_dict(), state)


def test_a_training_checkpoint_with_state_dict_and_ddp_prefix_loads(checkpoint, tmp_path):
    path, state = checkpoint
    wrapped = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    clip = create_clip("benchbd-rn-tiny", pretrained=str(wrapped))
    assert same_weights(clip.model.state_dict(), state)


def test_a_pickled_module_is_refused_by_weights_only_loading(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(BenchbdError, match=r"^refused to load module.pt: .*weights_only=True"):
        create_clip("benchbd-rn-tiny", pretrained=str(path))


def test_weights_of_another_model_are_a_clear_error(tmp_path):
    path = tmp_path / "vit.pt"
    torch.save(create_clip("benchbd-vit-tiny").model.state_dict(), path)
    with pytest.raises(BenchbdError, match="cannot load vit.pt into this model"):
        create_clip("benchbd-rn-tiny", pretrained=str(path))


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(BenchbdError, match="checkpoint file .*nope.pt' does not exist"):
        create_clip("benchbd-rn-tiny", pretrained=str(tmp_path / "nope.pt"))


def test_unknown_tag_lists_the_model_tags():
    with pytest.raises(BenchbdError, match="no pretrained tag 'opena'; did you mean 'openai'"):
        create_clip("RN50", pretrained="opena")


def test_offline_tag_says_so_and_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(BenchbdError) as info:
        create_clip("RN50", pretrained="openai")
    message = str(info.value)
    assert "RN50/openai are not in the local cache and cannot be downloaded (no network)" in message
    assert "--pretrained /path/to/file" in message and str(tmp_path / "hub") in message
    assert "\n" not in message


def test_a_tag_in_the_hub_cache_is_found_without_network(tmp_path, monkeypatch):
    """The file open_clip would download, placed as the hub cache stores it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--timm--resnet50_clip.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    found = pretrained_file("RN50", "openai")
    assert found == snapshot / "open_clip_pytorch_model.bin"


def test_fingerprints_without_pretrained_weights_are_unchanged(tiny_data):
    """Cached from-scratch models stay valid: the key is exactly what it always was."""
    config = RunConfig(sizes=DataSizes(1024, 256, 200), device="cpu")
    attack = build_attack(config, tiny_data)
    old_key = {
        "version": MODEL_CACHE_VERSION, "data": tiny_data.train_key, "attack": "badnet",
        "attack_params": attack.params.to_dict(), "target": attack.setup.target,
        "count": attack.setup.count, "model": config.model,
        "pretrain": config.pretrain.to_dict(), "seed": 0,
    }  # fmt: skip
    assert poisoned_fingerprint(config, tiny_data, attack) == fingerprint(old_key)
    tagged = RunConfig(sizes=config.sizes, pretrained="openai", from_pretrained=True)
    assert poisoned_fingerprint(tagged, tiny_data, attack) != fingerprint(old_key)


def test_from_pretrained_needs_weights():
    with pytest.raises(BenchbdError, match="--from-pretrained needs --pretrained"):
        RunConfig(from_pretrained=True)


@pytest.mark.slow
@pytest.mark.parametrize("finetune", [False, True])
def test_pretrained_weights_as_given_or_finetuned_on_poisons(
    checkpoint, tmp_path, monkeypatch, finetune
):
    monkeypatch.setenv("BENCHBD_WORKERS", "0")
    path, _ = checkpoint
    pairs = write_pairs(tmp_path / "cc", n=24)
    val = write_folder(tmp_path / "val", per_class=1)
    config = RunConfig(
        dataset=f"csv:{pairs}|eval=imagefolder:{val}",
        defense="none",
        target="n2",
        poison_count=2,
        sizes=DataSizes(0, 4, 0),
        device="cpu",
        pretrained=str(path),
        from_pretrained=finetune,
        pretrain=TrainConfig(epochs=1, batch_size=8, lr=1e-3),
    )
    result = run(config)
    assert result.extra["pretrained"] == {"weights": str(path), "finetuned": finetune}
    data = load_data(config.dataset, config.sizes, 32)
    attack = build_attack(config, data)
    clip = create_clip("benchbd-rn-tiny", pretrained=str(path))
    as_loaded = evaluate(clip, data.test, data.task, attack.setup.target, attack.apply_trigger,
                         substream(0, "evaluate"))  # fmt: skip
    saved = cache_dir() / "models" / f"{result.poisoned_model_fingerprint}.pt"
    assert saved.exists() == finetune  # finetuned on the poisons: cached like any poisoned model
    if not finetune:  # used as it is: what the run measured is the checkpoint itself
        assert result.metrics["before"] == as_loaded.to_dict()
