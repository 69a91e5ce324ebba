"""How fast the csv: source decodes images, and how much memory streamed evaluation takes.

python benchmarks/csv_loader.py [--images 2000] [--side 256] [--workers 2] [--eval 50000]

1. Writes N photo-like JPEG images (224 px by default) and a CleanCLIP-style CSV into a
   temporary folder, then decodes them to 224 px three ways: a plain single-process PIL loop
   (open, convert, resize, crop), benchbd's decoder in one process, and benchbd's DataLoader
   stream with W workers (the path training and evaluation use).
2. Writes an image folder of E tiny PNGs (10 classes) and measures the peak memory (RSS) of a
   process that evaluates all of them streamed, against one that evaluates a tenth of them:
   streamed evaluation keeps only the current batch, so the two peaks should be close.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SIZE = 224


def photo(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Smooth colour gradients plus noise: compresses like a photo, unlike pure noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b, c = rng.uniform(0.005, 0.05, 3)
    base = np.stack([np.sin(a * x + b * y), np.cos(b * x - c * y), np.sin(c * (x + y))], axis=-1)
    pixels = 127 + 100 * base + rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def write_csv_set(folder: Path, n: int, side: int, aspect: float) -> Path:
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    with open(folder / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption"])
        for i in range(n):
            photo(rng, round(side * aspect), side).save(folder / "images" / f"{i}.jpg", quality=90)
            writer.writerow([f"images/{i}.jpg", f"a photo number {i}"])
    return folder / "train.csv"


def plain_pil(paths: list[Path]) -> None:
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
            w, h = image.size
            scale = SIZE / min(w, h)
            image = image.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
            left, top = (image.width - SIZE) // 2, (image.height - SIZE) // 2
            image = image.crop((left, top, left + SIZE, top + SIZE))
            torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def rate(n: int, work) -> float:
    start = time.perf_counter()
    work()
    return n / (time.perf_counter() - start)


def loader_figures(args) -> None:
    from benchbd.engine.data.images import decode, stream
    from benchbd.engine.data.listings import csv_listing
    from benchbd.engine.data.spec import parse_source

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = write_csv_set(Path(tmp), args.images, args.side, args.aspect)
        print(f"wrote {args.images} JPEGs ({round(args.side * args.aspect)}x{args.side}) + CSV in "
              f"{time.perf_counter() - start:.1f} s")  # fmt: skip
        listing = csv_listing(parse_source(f"csv:{path}"))
        from benchbd.engine.data.images import LazyImages

        images = LazyImages(listing.reader, np.arange(listing.size), SIZE)
        paths = [Path(tmp) / "images" / f"{i}.jpg" for i in range(args.images)]
        plain_pil(paths[:50])  # warm the page cache and PIL
        plain = rate(args.images, lambda: plain_pil(paths))
        ours = rate(args.images, lambda: [decode(p, SIZE, p.name) for p in paths])
        batches = [list(range(i, min(i + 64, args.images))) for i in range(0, args.images, 64)]

        def streamed() -> None:
            for _ in stream(images, batches, workers=args.workers):
                pass

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        loader = rate(args.images, streamed)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / args.images
    print(f"plain PIL loop, 1 process:          {plain:7.0f} images/s")
    print(f"benchbd decode, 1 process:          {ours:7.0f} images/s")
    print(f"benchbd stream, {args.workers} workers:          {loader:7.0f} images/s "
          f"({loader / plain:.2f}x the plain loop; target >= 1000/s)")  # fmt: skip
    print(f"  workers' CPU time: {cpu * 1e3:.2f} ms per image, i.e. {args.workers / cpu:.0f} "
          f"images/s when {args.workers} cores are free for them")  # fmt: skip


def eval_peak(folder: str, n: int) -> None:
    """Run in a child process: evaluate n images of the folder streamed; print peak RSS."""
    from benchbd.engine.data.sizes import DataSizes
    from benchbd.engine.data.sources import load_data
    from benchbd.engine.evaluate import evaluate
    from benchbd.engine.model import create_clip

    os.environ["BENCHBD_WORKERS"] = "2"
    torch.set_num_threads(1)
    clip = create_clip("benchbd-rn-tiny")
    data = load_data(f"imagefolder:{folder}", DataSizes(0, 1, n), clip.image_size)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    metrics = evaluate(clip, data.test, data.task, 0, lambda x, g: x.flip(-1), seed=0)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{n} {metrics.n_test} {baseline:.0f} {peak:.0f} {workers:.0f} {seconds:.1f}")


def memory_figures(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for k in range(10):
            (Path(tmp) / f"class{k}").mkdir()
        for i in range(args.eval + 100):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(Path(tmp) / f"class{i % 10}" / f"{i}.png")
        print(f"wrote {args.eval + 100} PNGs (32 px, 10 class folders) in "
              f"{time.perf_counter() - start:.1f} s")  # fmt: skip
        print("images  peak RSS (main process)  after loading the listing  worker peak  time")
        for n in (args.eval // 10, args.eval):
            out = subprocess.run(
                [sys.executable, __file__, "--eval-child", tmp, str(n)],
                check=True, capture_output=True, text=True,
            ).stdout.split()  # fmt: skip
            _, n_test, baseline, peak, workers, seconds = out
            held = int(n_test) * 3 * 32 * 32 / 2**20
            print(f"{int(n_test):6d}  {peak:>6} MB                {baseline:>6} MB"
                  f"                 {workers:>5} MB  {seconds:>5} s")  # fmt: skip
            print(f"        (held in memory the images alone: {held:.0f} MB; at 224 px "
                  f"{held * 49:.0f} MB)")  # fmt: skip


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--eval-child":
        eval_peak(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--side", type=int, default=224, help="short side of written images")
    parser.add_argument("--aspect", type=float, default=1.0, help="width / height of them")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--eval", type=int, default=50_000, help="0 skips the memory figure")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f} at the start")
    loader_figures(args)
    if args.eval:
        memory_figures(args)
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other processes share the cores)")


if __name__ == "__main__":
    main()
