"""Would `torch.compile` make pretraining faster? The eager step against the compiled one,
side by side in one run.

The harness trains eagerly. This measures what compiling the model (TorchInductor, the C++
CPU backend) would change, at this process's threads and kernels:

- the compile cost: the first compiled steps' time beyond an eager step's (paid once per
  process, and every sweep cell is a process);
- steady-state pairs/s of both, timed in alternating rounds so load from other work falls
  on both alike;
- the break-even: training steps after which the compiled run has paid its compile cost back,
  and the net time it would save on one default pretraining (20,000 pairs x 8 epochs at batch
  128, 1,248 steps);
- whether it trains the same weights: the largest weight difference after the same steps from
  the same seed (compiled kernels fuse and reorder arithmetic, so the numbers are not
  bit-identical and would be another experiment for the reproducibility promise).

    python benchmarks/compiled_step.py [--pairs 2048] [--batch-size 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

# isort: off
import benchbd  # noqa: F401  (first: it pins the CPU kernels, which torch reads as it loads)

# isort: on
import torch

from benchbd.core import kernels
from benchbd.engine import distributed
from benchbd.engine.data import synthetic
from benchbd.engine.data.pairs import PairSet
from benchbd.engine.model import DEFAULT_MODEL, create_clip
from benchbd.engine.train import TrainConfig, build_optimizer, clip_loss, memory_batches

DEFAULT_PRETRAIN_STEPS = 20_000 // 128 * 8


class Trainer:
    """A model, its optimizer and one training step, eager or compiled."""

    def __init__(self, model_name: str, compiled: bool) -> None:
        self.clip = create_clip(model_name, seed=0)
        self.clip.model.train()
        self.optimizer = build_optimizer(self.clip.model, 5e-4, 0.1)
        self.forward = torch.compile(self.clip.model) if compiled else self.clip.model

    def step(self, batch) -> float:
        images = self.clip.normalize(batch.images)
        out = self.forward(images, batch.tokens)
        loss = clip_loss(out["image_features"], out["text_features"], out["logit_scale"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def timed(self, batches) -> float:
        start = time.perf_counter()
        for batch in batches:
            self.step(batch)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    size = create_clip(args.model).image_size
    images, captions, labels = synthetic.generate_split(
        synthetic.SyntheticSpec(image_size=size), "train", args.pairs
    )
    pairs = PairSet(torch.from_numpy(images), captions, torch.from_numpy(labels))
    config = TrainConfig(batch_size=args.batch_size)
    steps = args.pairs // args.batch_size
    clip = create_clip(args.model, seed=0)
    batches = list(memory_batches(clip, pairs, config, steps, 0, distributed.world()))

    eager, compiled = Trainer(args.model, False), Trainer(args.model, True)
    first_eager = eager.timed(batches[:2])
    first_compiled = compiled.timed(batches[:2])  # compiles forward and backward
    weights = zip(eager.clip.model.parameters(), compiled.clip.model.parameters(), strict=True)
    same = max((a - b).abs().max().item() for a, b in weights)
    compile_s = first_compiled - first_eager
    rest = batches[2:]
    eager_s, compiled_s = [], []
    for _ in range(args.rounds):
        eager_s.append(eager.timed(rest))
        compiled_s.append(compiled.timed(rest))
    per_step_eager = sum(eager_s) / (len(eager_s) * len(rest))
    per_step_compiled = sum(compiled_s) / (len(compiled_s) * len(rest))
    saved = per_step_eager - per_step_compiled
    print(f"model {args.model}, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"{kernels.describe()['level']} kernels, {args.rounds} alternating rounds of "
          f"{len(rest)} steps")  # fmt: skip
    print(f"eager:    {args.batch_size / per_step_eager:8.1f} pairs/s")
    speedup = per_step_eager / per_step_compiled
    print(f"compiled: {args.batch_size / per_step_compiled:8.1f} pairs/s ({speedup:.2f}x), "
          f"compile cost {compile_s:.1f} s")  # fmt: skip
    if saved > 0:
        net = DEFAULT_PRETRAIN_STEPS * saved - compile_s
        print(f"break-even after {compile_s / saved:.0f} steps; one default pretraining "
              f"({DEFAULT_PRETRAIN_STEPS} steps) would save {net:.1f} s net of "
              f"{DEFAULT_PRETRAIN_STEPS * per_step_eager:.1f} s")  # fmt: skip
    else:
        print("compiled steps are not faster here: never breaks even")
    print(f"largest weight difference after 2 steps from the same seed: {same:.3g}")


if __name__ == "__main__":
    main()
