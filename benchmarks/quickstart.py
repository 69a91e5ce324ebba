"""The README's quickstart, timed: `benchbd run --attack blended --defense cleanclip` from an
empty cache (dataset generation, poisoning, pretraining, CleanCLIP, two evaluations), as a new
user meets it. Prints the wall time and the CA / ASR before and after.

    python benchmarks/quickstart.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, BENCHBD_CACHE=cache)
        command = [sys.executable, "-m", "benchbd", "run", "--attack", "blended",
                   "--defense", "cleanclip", "--out", out]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        (path,) = Path(out).glob("*.json")
        metrics = json.loads(path.read_text())["metrics"]
    before, after = metrics["before"], metrics["after"]
    print(f"quickstart from an empty cache: {seconds:.0f} s on {os.cpu_count()} CPU cores")
    print(f"CA {before['ca']:.3f} -> {after['ca']:.3f}, "
          f"ASR {before['asr']:.3f} -> {after['asr']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
