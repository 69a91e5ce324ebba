"""`benchbd show` draws exactly the trigger a run applies at evaluation."""

from __future__ import annotations

import pytest
import torch

from benchbd.core.seeds import substream
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data
from benchbd.engine.evaluate import evaluate
from benchbd.engine.model import create_clip
from benchbd.engine.planning import build_attack
from benchbd.engine.poisoned_model import trigger_examples
from benchbd.engine.run_config import RunConfig

SIZES = DataSizes(train=16, clean=8, test=60)


def evaluation_triggers(config: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean and triggered images `run` classifies for ASR, caught on their way to the
    model: the attack built as `run` builds it, evaluated as `run` evaluates it (an untrained
    model, since the trigger does not depend on the model)."""
    clip = create_clip(config.model, seed=0)
    data = load_data(config.dataset, config.sizes, clip.image_size)
    attack = build_attack(config, data)
    seen = []

    def trigger(images, generator):
        seen.append(images.clone())
        seen.append(attack.apply_trigger(images, generator))
        return seen[-1]

    evaluate(clip, data.test, data.task, attack.setup.target, trigger,
             substream(config.seed, "evaluate"))  # fmt: skip
    return seen[0], seen[1]


@pytest.mark.parametrize(
    ("attack", "params"),
    [("wanet", {}), ("badnet", {}), ("blended", {"pattern": "fresh_noise"})],
)
@pytest.mark.parametrize("seed", [0, 3])
def test_show_draws_the_trigger_evaluation_applies(attack, params, seed):
    config = RunConfig(attack=attack, attack_params=params, seed=seed, sizes=SIZES)
    clean, triggered = evaluation_triggers(config)
    _, shown_clean, shown = trigger_examples(config, 8)
    assert torch.equal(shown_clean, clean[:8])
    assert torch.equal(shown, triggered[:8])
    assert not torch.equal(shown, shown_clean)
