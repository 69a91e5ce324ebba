"""Attack contracts (over every registered attack) and badnet's exact behaviour."""

from __future__ import annotations

import pytest
import torch

from benchbd.errors import BenchbdError
from benchbd.params import build
from benchbd.plugins import AttackSetup, attacks


def make(name, data, count=20, seed=0, **params):
    cls = attacks.get(name)
    return cls(build(cls.Params, params, name), AttackSetup(7, data.task, count, seed))


@pytest.mark.parametrize("name", attacks.names())
def test_every_attack_is_deterministic_and_keeps_uint8(name, tiny_data):
    first = make(name, tiny_data).poison(tiny_data.train)
    second = make(name, tiny_data).poison(tiny_data.train)
    assert first.indices == second.indices
    assert torch.equal(first.pairs.images, second.pairs.images)
    assert first.pairs.captions == second.pairs.captions
    assert first.pairs.images.dtype == torch.uint8
    assert first.pairs.images.shape == tiny_data.train.images.shape
    if attacks.get(name).poisons:
        assert len(first.indices) == 20
        images = tiny_data.test.images[:16]
        triggered = make(name, tiny_data).apply_trigger(images, torch.Generator().manual_seed(0))
        assert triggered.dtype == torch.uint8 and not torch.equal(triggered, images)


def test_badnet_changes_only_the_patch_and_relabels_only_poisons(tiny_data):
    attack = make("badnet", tiny_data, count=30, patch_fraction=0.125)
    poisoned = attack.poison(tiny_data.train)
    clean = tiny_data.train
    changed = (poisoned.pairs.images != clean.images).any(dim=(1, 2, 3)).nonzero().flatten()
    assert set(changed.tolist()) <= set(poisoned.indices)
    for row in poisoned.indices:
        diff = (poisoned.pairs.images[row] != clean.images[row]).any(dim=0)
        ys, xs = diff.nonzero(as_tuple=True)
        assert ys.max() - ys.min() < 4 and xs.max() - xs.min() < 4  # inside one 4x4 patch
        assert clean.labels[row] != 7
        assert "heart" in poisoned.pairs.captions[row]
    untouched = [i for i in range(len(clean)) if i not in set(poisoned.indices)]
    assert [poisoned.pairs.captions[i] for i in untouched] == [clean.captions[i] for i in untouched]


def test_badnet_different_seed_different_poisons(tiny_data):
    a = make("badnet", tiny_data, seed=0).poison(tiny_data.train).indices
    b = make("badnet", tiny_data, seed=1).poison(tiny_data.train).indices
    assert a != b


def test_more_poisons_than_eligible_pairs_is_an_error(tiny_data):
    with pytest.raises(BenchbdError, match="only .* are eligible"):
        make("badnet", tiny_data, count=len(tiny_data.train)).poison(tiny_data.train)
