"""Named random streams: `substream` itself, the streams that used to be seed arithmetic, and a
guard that no generator is seeded by arithmetic on a seed again."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

from benchbd.core.seeds import substream
from benchbd.engine import evaluate, train
from benchbd.engine.data.pairs import PairSet
from benchbd.engine.distributed import World

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("benchbd", "attacks", "defenses")


def test_substream_is_deterministic():
    assert substream(0, "init") == substream(0, "init")
    assert substream(12345, "batch-7") == substream(12345, "batch-7")


def test_substream_differs_by_name_and_by_seed():
    names = ["init", "poison", "evaluate", "shifts", "cross", "batch-0", "batch-1"]
    assert len({substream(0, name) for name in names}) == len(names)
    assert len({substream(seed, "init") for seed in range(100)}) == 100
    # what `seed + 1` got wrong: run seed 1's stream is not run seed 0's next stream
    assert substream(1, "poison") not in {substream(0, name) for name in names}


@pytest.mark.parametrize("seed", [0, 1, 2**31, 2**63 - 1])
def test_substream_is_a_32_bit_seed(seed):
    for name in ("init", "batch-3", ""):
        value = substream(seed, name)
        assert isinstance(value, int) and 0 <= value < 2**32
        torch.Generator().manual_seed(value)  # every generator accepts it


def test_substream_keeps_its_published_values():
    """The function moved modules; a cached poisoned model is keyed by streams it drew, so the
    values themselves must not change."""
    import hashlib

    digest = hashlib.sha256(b"0:init").digest()[:4]
    assert substream(0, "init") == int.from_bytes(digest, "little")


class RecordingTrigger:
    """A trigger that leaves images unchanged and records the seed of each generator it got."""

    def __init__(self) -> None:
        self.seeds: list[int] = []

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.seeds.append(generator.initial_seed())
        return images


def test_streamed_evaluation_seeds_each_batch_by_its_named_substream():
    images = torch.zeros((4, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 1])
    trigger = RecordingTrigger()
    for batch in range(3):
        evaluate.trigger_test_images(images, labels, 1, trigger, 42, batch)
    assert trigger.seeds == [substream(42, f"batch-{batch}") for batch in range(3)]
    assert trigger.seeds == [substream(42, evaluate.batch_stream(batch)) for batch in range(3)]


def test_in_memory_evaluation_seeds_the_trigger_by_the_evaluation_seed():
    images = torch.zeros((4, 3, 8, 8), dtype=torch.uint8)
    trigger = RecordingTrigger()
    evaluate.trigger_test_images(images, torch.tensor([0, 1, 2, 1]), 1, trigger, 42)
    assert trigger.seeds == [42]


class FakeClip:
    def tokenize(self, captions: list[str]) -> torch.Tensor:
        return torch.zeros((len(captions), 4), dtype=torch.long)


def test_streamed_training_draws_shifts_from_their_named_substream(monkeypatch):
    """Batches come back shifted exactly as a generator seeded by substream(seed, "shifts")
    shifts them; the loader is replaced by one that yields the requested rows in memory."""
    n, size, batch_size, seed = 8, 16, 4, 5
    pixels = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)
    pairs = PairSet(pixels, [f"caption {i}" for i in range(n)], torch.arange(n))

    def in_memory(images, batches, workers=None):
        for positions in batches:
            yield pixels[positions], positions

    monkeypatch.setattr(train, "stream", in_memory)
    config = train.TrainConfig(batch_size=batch_size, shift=0.125)
    got = list(train.streamed_batches(FakeClip(), pairs, config, 3, seed, World()))

    order = train.EpochOrder(n, batch_size, 3, seed, slice(None))
    shifts = torch.Generator().manual_seed(substream(seed, "shifts"))
    pad = int(round(config.shift * size))
    assert len(got) == 3
    for batch, positions in zip(got, order, strict=True):
        dy = torch.randint(0, 2 * pad + 1, (batch_size,), generator=shifts)
        dx = torch.randint(0, 2 * pad + 1, (batch_size,), generator=shifts)
        assert torch.equal(batch.images, train.shift_by(pixels[positions], pad, dy, dx))


def test_wanet_cross_pairs_come_from_their_named_substream(tiny_data):
    from benchbd.attacks.wanet import WaNet, WaNetParams

    from benchbd.engine.plugins import AttackSetup

    setup = AttackSetup(7, tiny_data.task, 20, 3)
    poisoned = WaNet(WaNetParams(cross_ratio=1.0), setup).poison(tiny_data.train)
    plain = WaNet(WaNetParams(), setup).poison(tiny_data.train)
    assert poisoned.indices == plain.indices

    taken = torch.zeros(len(tiny_data.train), dtype=torch.bool)
    taken[poisoned.indices] = True
    free = torch.nonzero(~taken).flatten()
    generator = torch.Generator().manual_seed(substream(3, "cross"))
    expected = set(free[torch.randperm(len(free), generator=generator)[:20]].tolist())
    changed = (poisoned.pairs.images != plain.pairs.images).flatten(1).any(1)
    cross = set(changed.nonzero().flatten().tolist())
    assert cross and cross <= expected  # a warped image may round back to the same bytes
    assert len(cross) >= 15


# Calls that seed a generator, and arithmetic on something named like a seed.
SEEDING_CALLS = {"manual_seed", "default_rng", "Random", "RandomState", "SeedSequence", "seed"}
SEED_ARITHMETIC = re.compile(r"[\w.]*seed\w*\)?\s*[-+*]|[-+*]\s*[\w.(]*seed")


def seed_arithmetic(text: str) -> list[str]:
    """Each seeding call, `seed=` argument or `..._seed = ` assignment of `text` whose value
    does arithmetic on a seed. The source is parsed, so that a call spread over lines is one
    argument and a seed computed a line before the call is caught where it is computed."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arguments = list(node.args) if name in SEEDING_CALLS else []
            arguments += [k.value for k in node.keywords if k.arg and "seed" in k.arg]
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = any("seed" in ast.unparse(target) for target in targets)
            arguments = [node.value] if named else []
        else:
            continue
        for argument in arguments:
            segment = ast.get_source_segment(text, argument) or ""
            if SEED_ARITHMETIC.search(segment):
                found.append(ast.get_source_segment(text, node) or segment)
    return found


def test_the_guard_catches_seed_arithmetic():
    assert seed_arithmetic("g = torch.Generator().manual_seed(seed + 1)")
    assert seed_arithmetic("torch.manual_seed(self.setup.seed * 100_003 + batch)")
    assert seed_arithmetic("torch.manual_seed(int(seed) - 1)")
    assert seed_arithmetic("g = torch.Generator().manual_seed(\n    seed\n    + 1\n)")
    assert seed_arithmetic("rng = np.random.default_rng(2 * seed)")
    assert seed_arithmetic("train(clip, pairs, config, seed=context.seed + 1)")
    assert seed_arithmetic("generator_seed = seed if batch is None else seed * 100_003 + batch")
    assert not seed_arithmetic('g = torch.Generator().manual_seed(substream(seed, "shifts"))')
    assert not seed_arithmetic("torch.manual_seed(self.setup.seed)")
    assert not seed_arithmetic("rng = np.random.default_rng([spec.seed, SPLIT_IDS[split], n])")
    assert not seed_arithmetic('step_seed = substream(self.seed, f"views:{batch.step}")')


def test_no_generator_is_seeded_by_arithmetic_on_a_seed():
    found = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            where = path.relative_to(ROOT)
            found += [f"{where}: {call}" for call in seed_arithmetic(path.read_text())]
    message = "seed each generator with benchbd.core.seeds.substream(seed, name) instead:\n"
    assert not found, message + "\n".join(found)
