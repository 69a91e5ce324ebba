"""How long the embedded dataset takes to generate, and to load back from its cache.

python benchmarks/dataset_speed.py [--pairs 20000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from benchbd.engine.data import synthetic
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=20_000)
    args = parser.parse_args()
    start = time.perf_counter()
    synthetic.generate_split(synthetic.SyntheticSpec(), "train", args.pairs)
    generate = time.perf_counter() - start
    print(f"generate {args.pairs} pairs (32 px):            {generate:6.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BENCHBD_CACHE"] = tmp
        sizes = DataSizes(train=args.pairs)
        start = time.perf_counter()
        load_data("synthetic", sizes, 32)
        first = time.perf_counter() - start
        start = time.perf_counter()
        load_data("synthetic", sizes, 32)
        cached = time.perf_counter() - start
    total = args.pairs + sizes.clean + sizes.test
    print(f"all three splits ({total} pairs), generate + cache: {first:6.2f} s")
    print(f"all three splits, from the Arrow cache:           {cached:6.2f} s")


if __name__ == "__main__":
    main()
