"""Two gloo ranks on CPU against one process on the same global batch: the same loss and the
same averaged gradients (for the CLIP loss and for CleanCLIP's, whose in-modal term is gathered
too), the same training trajectory (in memory and streamed from disk), and the same metrics
from evaluation sharded across the ranks."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import write_folder, write_pairs

from benchbd.engine import distributed
from benchbd.engine.data.pairs import PairSet
from benchbd.engine.model import create_clip
from benchbd.engine.train import Batch, TrainConfig, contrastive_objective, train

MODEL = "benchbd-vit-tiny"  # layer norm only: SyncBatchNorm has no CPU implementation
GLOBAL_BATCH = 8
RECIPE = TrainConfig(epochs=3, batch_size=GLOBAL_BATCH, lr=1e-3, warmup_steps=1)


def pairs(n: int = 16) -> PairSet:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    captions = [f"a picture of thing {i} in colour {i % 3}" for i in range(n)]
    return PairSet(images, captions, torch.full((n,), -1))


def gradients(clip) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in clip.model.named_parameters() if p.grad is not None}


def one_step(clip, batch: Batch, objective) -> tuple[float, dict[str, torch.Tensor]]:
    clip.model.train()
    loss = objective(clip, batch)
    loss.backward()
    return loss.item(), gradients(clip)


def cleanclip_objective():
    """CleanCLIP's objective with views that depend on each row alone (a flip, the words
    reversed), so that a rank's views are its slice of the global batch's views; the real
    views are drawn per batch under a seed and are not what this test is about."""
    from benchbd.defenses.cleanclip import CleanCLIPObjective

    objective = CleanCLIPObjective(1.0, 1.0, text_views=None, seed=0)
    objective.image_views = lambda images, seed: images.flip(-1)
    objective.text_views = lambda captions, seed: [" ".join(c.split()[::-1]) for c in captions]
    return objective


def global_batch(data: PairSet, clip) -> Batch:
    index = torch.arange(GLOBAL_BATCH)
    captions = [data.captions[i] for i in index.tolist()]
    return Batch(data.images[index], captions, clip.tokenize(captions), data.labels[index], 0)


def streamed_run(spec: str) -> tuple[list[float], dict]:
    """Training streamed from disk, then streamed evaluation (batches of 2, sharded across
    ranks) with badnet's random trigger, which draws from the per-batch generators."""
    from benchbd.core.params import build
    from benchbd.engine.data.sizes import DataSizes
    from benchbd.engine.data.sources import load_data
    from benchbd.engine.evaluate import evaluate_streamed
    from benchbd.engine.plugins import AttackSetup, attacks

    real = load_data(spec, DataSizes(0, 8, 0), 32)
    clip = create_clip(MODEL, seed=0)
    losses = train(clip, real.train, RECIPE, seed=2)
    badnet = attacks.get("badnet")
    attack = badnet(build(badnet.Params, {}, "badnet"), AttackSetup(0, real.task, 0, seed=0))
    metrics = evaluate_streamed(clip, real.test, real.task, 0, attack.apply_trigger, 5, 2)
    return losses, metrics.to_dict()


def rank_main(rank: int, world_size: int, init_file: str, folder: str, out: str) -> None:
    os.environ["BENCHBD_WORKERS"] = "0"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)  # fmt: skip
    try:
        data = pairs()
        clip = create_clip(MODEL, seed=0)
        rows = distributed.world().rows(GLOBAL_BATCH)
        full = global_batch(data, clip)
        local = Batch(full.images[rows], full.captions[rows], full.tokens[rows],
                      full.labels[rows], 0)  # fmt: skip
        loss, _ = one_step(clip, local, contrastive_objective)
        distributed.average_gradients(list(clip.model.parameters()))
        grads = gradients(clip)
        clip = create_clip(MODEL, seed=0)
        cleanclip, _ = one_step(clip, local, cleanclip_objective())
        distributed.average_gradients(list(clip.model.parameters()))
        cleanclip_grads = gradients(clip)
        losses = train(create_clip(MODEL, seed=0), data, RECIPE, seed=1)
        streamed, metrics = streamed_run(folder)
        torch.save({"loss": loss, "grads": grads, "cleanclip": cleanclip,
                    "cleanclip_grads": cleanclip_grads, "losses": losses, "streamed": streamed,
                    "metrics": metrics}, f"{out}.{rank}")  # fmt: skip
    finally:
        dist.destroy_process_group()


@pytest.fixture
def real_spec(tmp_path):
    csv_path = write_pairs(tmp_path / "cc", n=24)
    val = write_folder(tmp_path / "val", per_class=1)
    return f"csv:{csv_path}|eval=imagefolder:{val}"


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process_on_the_global_batch(tmp_path, real_spec, monkeypatch):
    monkeypatch.setenv("BENCHBD_WORKERS", "0")
    out = str(tmp_path / "rank")
    mp.spawn(rank_main, args=(2, str(tmp_path / "init"), real_spec, out), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]

    data = pairs()
    clip = create_clip(MODEL, seed=0)
    loss, grads = one_step(clip, global_batch(data, clip), contrastive_objective)
    clip = create_clip(MODEL, seed=0)
    cleanclip, cleanclip_grads = one_step(clip, global_batch(data, clip), cleanclip_objective())
    losses = train(create_clip(MODEL, seed=0), data, RECIPE, seed=1)
    streamed, metrics = streamed_run(real_spec)

    for rank in ranks:
        assert rank["loss"] == pytest.approx(loss, rel=1e-5)
        assert rank["grads"].keys() == grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(rank["grads"][name], grad, rtol=1e-4, atol=1e-6)
        assert rank["cleanclip"] == pytest.approx(cleanclip, rel=1e-5)
        assert rank["cleanclip_grads"].keys() == cleanclip_grads.keys()
        for name, grad in cleanclip_grads.items():
            # gradients of both terms over twice the rows: up to 3 in size, float32 noise 3e-6
            torch.testing.assert_close(rank["cleanclip_grads"][name], grad, rtol=1e-4, atol=1e-5)
        assert rank["losses"] == pytest.approx(losses, rel=1e-4)
        assert rank["streamed"] == pytest.approx(streamed, rel=1e-4)
        assert rank["metrics"] == metrics
    assert len(losses) == 6 and len(streamed) == 6


def test_batch_must_split_evenly_across_ranks():
    from benchbd.core.errors import BenchbdError

    with pytest.raises(BenchbdError, match="batch size 9 is not divisible by the 2 ranks"):
        distributed.World(rank=0, size=2).rows(9)


def test_single_process_is_a_world_of_one():
    assert distributed.world() == distributed.World()
    assert distributed.device_for("cpu") == "cpu"
