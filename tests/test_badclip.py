"""BadCLIP: the patch its optimisation finds, the cache that keeps it, and the natural captions
of its poisoned pairs, against a tiny untrained surrogate."""

from __future__ import annotations

import functools
import logging

import pytest
import torch
import torch.nn.functional as F
from benchbd.attacks.badclip import (
    CARRIER_ROWS,
    NATURAL_ROWS,
    PATCH_VERSION,
    BadCLIP,
    BadCLIPParams,
    dual_embedding_loss,
    embed_images,
    embed_texts,
    guide_from,
    paste,
    weights_digest,
)

from benchbd.core.cache import fingerprint
from benchbd.core.errors import BenchbdError
from benchbd.core.params import build
from benchbd.engine.model import create_clip
from benchbd.engine.plugins import AttackSetup

TARGET = 7
QUICK = {"steps": 5, "batch_size": 8}  # well under a second of optimisation


@functools.cache
def surrogate():
    return create_clip(seed=0)


def make(data, seed=0, count=20, **params):
    setup = AttackSetup(TARGET, data.task, count, seed, surrogate=surrogate)
    return BadCLIP(build(BadCLIPParams, {**QUICK, **params}, "badclip"), setup)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache of this test's own, so a patch is optimised or found as the test says."""
    monkeypatch.setenv("BENCHBD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_optimised_patch_lowers_the_dual_embedding_loss(tiny_data, cache):
    patch = make(tiny_data, steps=30, batch_size=16).prepare(tiny_data.train)
    # Measured on another draw of the pool than the one optimised on.
    guide = guide_from(tiny_data.train, TARGET, torch.Generator().manual_seed(1))
    clip = surrogate()
    carriers = guide.carriers[:64]
    clean = embed_images(clip, carriers, "cpu")
    positives = embed_images(clip, guide.targets[:64], "cpu")
    texts = embed_texts(clip, guide.captions[:64], "cpu")
    scale = min(float(clip.model.logit_scale.detach().exp()), 100.0)

    @torch.no_grad()
    def loss(p: torch.Tensor) -> float:
        features = clip.model.encode_image(clip.normalize(paste(carriers, p)))
        patched = F.normalize(features, dim=-1)
        return float(dual_embedding_loss(patched, clean, positives, texts, scale, 1.0, 500.0))

    draws = [torch.Generator().manual_seed(s) for s in range(3)]
    randoms = [torch.randint(0, 256, patch.shape, dtype=torch.uint8, generator=g) for g in draws]
    assert loss(patch) < min(loss(r) for r in randoms) - 10


def test_the_same_seed_optimises_the_same_patch(tiny_data, cache, monkeypatch, tmp_path):
    first = make(tiny_data).prepare(tiny_data.train)
    monkeypatch.setenv("BENCHBD_CACHE", str(tmp_path / "other"))  # optimised again, not read
    again = make(tiny_data)
    assert torch.equal(again.prepare(tiny_data.train), first) and again.optimise_seconds
    assert not torch.equal(make(tiny_data, seed=1).prepare(tiny_data.train), first)
    assert first.shape == (3, 8, 8) and first.dtype == torch.uint8  # badnet's 25 % side


def test_the_patch_file_keeps_its_name_under_the_model_cache(tiny_data, cache):
    """Patches cached by earlier releases are still found: the file is named as it always was,
    from a fingerprint of the same key."""
    attack = make(tiny_data)
    key = fingerprint({"version": PATCH_VERSION, "surrogate": weights_digest(surrogate()),
                       "params": attack.params.to_dict(), "seed": 0, "target": TARGET,
                       "image_side": 32, "carriers": CARRIER_ROWS,
                       "natural": NATURAL_ROWS})  # fmt: skip
    assert attack.cache_path(32) == cache / "models" / f"badclip-patch-{key}.pt"


def test_the_patch_is_cached_and_a_damaged_entry_is_optimised_again(tiny_data, cache, caplog):
    with caplog.at_level(logging.INFO, logger="benchbd"):
        first = make(tiny_data)
        patch = first.prepare(tiny_data.train)
    assert first.optimise_seconds > 0 and "badclip optimised its 8 x 8 px patch" in caplog.text
    (path,) = (cache / "models").glob("badclip-patch-*.pt")

    reused = make(tiny_data)
    assert torch.equal(reused.prepare(tiny_data.train), patch) and reused.optimise_seconds is None
    images = tiny_data.test.images[:4]
    # A reused poisoned model is evaluated with the cached patch, without poisoning again.
    assert torch.equal(make(tiny_data).apply_trigger(images, torch.Generator()),
                       paste(images, patch))  # fmt: skip

    other_pool = make(tiny_data)  # a patch is only reused for the pool it was optimised on
    other_pool.prepare(tiny_data.train.subset(list(range(900))))
    assert other_pool.optimise_seconds is not None

    path.write_bytes(b"not a tensor file")
    with pytest.raises(BenchbdError, match="missing or damaged"):
        make(tiny_data).apply_trigger(images, torch.Generator())
    rebuilt = make(tiny_data)
    assert torch.equal(rebuilt.prepare(tiny_data.train), patch) and rebuilt.optimise_seconds
    assert torch.equal(make(tiny_data).apply_trigger(images, torch.Generator()),
                       paste(images, patch))  # fmt: skip


def test_poisons_carry_the_patch_and_natural_target_captions_from_the_pool(tiny_data, cache):
    attack = make(tiny_data, count=30)
    poisoned = attack.poison(tiny_data.train)
    pool = tiny_data.train
    natural = {pool.captions[i] for i in (pool.labels == TARGET).nonzero().flatten().tolist()}
    templates = set(tiny_data.task.prompts(tiny_data.task.classnames[TARGET]))
    patch = attack.patches[32]
    assert len(poisoned.indices) == 30
    for row in poisoned.indices:
        assert pool.labels[row] != TARGET
        caption = poisoned.pairs.captions[row]
        assert caption in natural
        image = poisoned.pairs.images[row]
        assert torch.equal(image[:, 12:20, 12:20], patch)  # centred, as the released code
        outside = torch.ones(32, 32, dtype=torch.bool)
        outside[12:20, 12:20] = False
        assert torch.equal(image[:, outside], pool.images[row][:, outside])
    used = {poisoned.pairs.captions[r] for r in poisoned.indices}
    assert len(used) > 1 and used - templates  # captions of the pool, not prompt templates
    untouched = sorted(set(range(len(pool))) - set(poisoned.indices))
    assert [poisoned.pairs.captions[i] for i in untouched] == [pool.captions[i] for i in untouched]

    (recorded,) = attack.state()["patches"]  # the result file can trigger images again
    assert recorded["image_side"] == 32 and recorded["corner"] == 12
    assert torch.equal(torch.tensor(recorded["values"], dtype=torch.uint8).view(3, 8, 8), patch)


def test_the_paper_size_and_the_errors_a_user_can_meet(tiny_data, cache):
    assert make(tiny_data, patch_fraction=0.071).prepare(tiny_data.train).shape == (3, 2, 2)
    no_surrogate = BadCLIP(BadCLIPParams(), AttackSetup(TARGET, tiny_data.task, 5, 0))
    with pytest.raises(BenchbdError, match="surrogate"):
        no_surrogate.poison(tiny_data.train)
    without_target = tiny_data.train.subset((tiny_data.train.labels != TARGET).nonzero().flatten())
    with pytest.raises(BenchbdError, match="no pair of the target class"):
        make(tiny_data).poison(without_target)


def test_show_optimises_the_patch_a_run_would_use(cache):
    """`benchbd show --attack badclip` on an empty cache: the preview trains the attacker's
    surrogate and optimises the patch from the training pool, as poisoning would, and draws
    that patch in the centre of each image; a run's poisoning then finds it in the cache."""
    from benchbd.engine.planning import build_attack, load_experiment_data
    from benchbd.engine.poisoned_model import trigger_examples
    from benchbd.engine.run_config import RunConfig

    config = RunConfig(attack="badclip", attack_params=dict(QUICK),
                       sizes={"train": 64, "clean": 8, "test": 40},
                       pretrain={"epochs": 1, "batch_size": 16})  # fmt: skip
    attack, clean, triggered = trigger_examples(config, 4)
    side = attack.patch_side(clean.shape[-1])
    changed = (triggered != clean).any(dim=(0, 1))
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert rows.numel() and rows.max() - rows.min() < side and cols.max() - cols.min() < side

    data = load_experiment_data(config)
    poisoning = build_attack(config, data, lambda: attack.surrogate())
    poisoning.poison(data.train)
    assert torch.equal(poisoning.patches[clean.shape[-1]], attack.patches[clean.shape[-1]])
