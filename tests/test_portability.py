"""The same numbers on every machine: a committed reference cell reruns to its exact numbers
with portable kernels, and `kernels.describe()` says which kernels really ran.

The kernels are fixed when torch is first imported, so every check runs in a fresh process.
Regenerate the reference (after a change that moves the numbers on purpose) with
`python tests/test_portability.py --write`.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from benchbd.core import kernels

REFERENCE = Path(__file__).resolve().parent / "reference"
CELL = REFERENCE / "portable_cell.json"
# A tiny blended x CleanCLIP cell on one thread: past the 50 warmup steps, so the weights move
# (ASR 0.89 -> 0.29), and well under a minute.
ARGS = ["--attack", "blended", "--defense", "cleanclip", "--train-pairs", "1024",
        "--clean-pairs", "256", "--test-images", "200", "--epochs", "4", "--batch-size", "64",
        "--param", "defense.epochs=4", "--param", "defense.batch_size=64",
        "--param", "defense.warmup_steps=0", "--threads", "1"]  # fmt: skip
DESCRIBE = "import json; from benchbd.core import kernels; print(json.dumps(kernels.describe()))"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the pins (the test process has them: it imported
    benchbd), plus `extra`."""
    drop = {kernels.ENV, *kernels.PINS}
    return {k: v for k, v in os.environ.items() if k not in drop} | extra


def child(code: str, **env: str) -> dict:
    """Run Python code in a fresh process; its last line of output, read as JSON. Remembered,
    since each process spends seconds importing torch."""
    return _child(code, tuple(sorted(env.items())))


@functools.cache
def _child(code: str, env: tuple[tuple[str, str], ...]) -> dict:
    done = subprocess.run([sys.executable, "-c", code], env=clean_env(**dict(env)),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cell(workdir: Path) -> tuple[Path, dict, str]:
    """The reference cell from an empty cache: its result file (path and content) and the
    digest of its poisoned model's weights."""
    cache, out = workdir / "cache", workdir / "out"
    done = subprocess.run(
        [sys.executable, "-m", "benchbd", "run", *ARGS, "--out", str(out)],
        env=clean_env(BENCHBD_CACHE=str(cache), BENCHBD_KERNELS="portable"),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("*.json")
    result = json.loads(path.read_text())
    from benchbd.core.cache import load_state

    checkpoint = cache / "models" / f"{result['poisoned_model_fingerprint']}.pt"
    return path, result, kernels.weights_digest(load_state(checkpoint))


def portable_here() -> dict:
    here = child(DESCRIBE)
    if not here["exact_across_machines"]:
        pytest.skip(f"portable kernels do not hold here: {here['note']}")
    return here


@pytest.mark.slow
def test_reference_cell_reruns_to_its_exact_numbers(tmp_path):
    reference = json.loads(CELL.read_text())
    here = portable_here()
    made = reference["kernels"]["libraries"]
    versions = {k: here["libraries"][k] for k in ("torch", "mkl", "onednn")}
    if versions != {k: made[k] for k in versions}:
        pytest.skip(f"the reference was made with {made}; this machine has {versions}")
    _, result, weights = run_cell(tmp_path)
    expected = json.loads((REFERENCE / reference["result"]).read_text())
    assert result["fingerprint"] == expected["fingerprint"], (
        "the cell's recipe changed: if on purpose, `python tests/test_portability.py --write`"
    )
    assert weights == reference["poisoned_weights"], (
        f"other poisoned weights than the reference made on {reference['kernels']['cpu']}"
    )
    assert result["metrics"] == expected["metrics"]
    assert result["der"] == expected["der"]
    if "kernels" in result["runtime"]:
        assert result["runtime"]["kernels"]["level"] == "portable-avx2"


def test_the_reference_cell_was_made_with_portable_kernels():
    reference = json.loads(CELL.read_text())
    assert reference["kernels"]["level"] == "portable-avx2"
    assert reference["kernels"]["exact_across_machines"]
    assert (REFERENCE / reference["result"]).is_file()


@pytest.mark.slow
def test_import_pins_portable_kernels_and_native_is_told_apart():
    portable = portable_here()
    assert (portable["mode"], portable["level"]) == ("portable", "portable-avx2")
    assert portable["aten_capability"] == "AVX2"
    assert (portable["onednn_max_isa"], portable["mkl_cbwr"]) == ("AVX2", "COMPATIBLE,STRICT")
    assert {"torch", "mkl", "onednn"} <= set(portable["libraries"])
    native = child(DESCRIBE, BENCHBD_KERNELS="native")
    assert native["mode"] == "native"
    assert native["level"] == f"native-{native['aten_capability'].lower()}" != portable["level"]
    assert native["mkl_cbwr"] is None and not native["exact_across_machines"]


OPENBLAS = ("import json, benchbd, numpy; from threadpoolctl import threadpool_info; "
            "print(json.dumps([i.get('architecture') for i in threadpool_info() "
            "if i.get('internal_api') == 'openblas']))")  # fmt: skip


@pytest.mark.slow
def test_numpy_openblas_runs_its_avx2_kernels_when_portable():
    portable = child(OPENBLAS)
    assert portable and set(portable) == {"Haswell"}  # scikit-learn's fits run on these
    assert portable_here()["openblas_coretype"] == "Haswell"
    native = child(DESCRIBE, BENCHBD_KERNELS="native")
    assert native["openblas_coretype"] is None


@pytest.mark.slow
def test_torch_imported_first_is_recorded_as_what_ran():
    portable_here()
    code = "import torch; " + DESCRIBE
    late = child(code)
    assert late["level"] == f"unpinned-{late['aten_capability'].lower()}"
    assert "imported before benchbd" in late["note"] and not late["exact_across_machines"]
    # pins already in the environment (a worker started by a pinned process) did hold
    inherited = child(code, **kernels.PINS)
    assert (inherited["aten_capability"], inherited["level"]) == ("AVX2", "portable-avx2")


@pytest.mark.slow
def test_run_kernels_native_applies_before_torch_is_imported():
    code = ("import sys; sys.argv = ['benchbd', 'run', '--kernels', 'native', '--help']\n"
            "from benchbd.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            + DESCRIBE)  # fmt: skip
    described = child(code)
    assert described["mode"] == "native" and described["level"].startswith("native-")
    assert described["aten_capability"] == child("import torch; " + DESCRIBE)["aten_capability"]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [(["run", "--kernels", "fast"], {}, "--kernels must be 'portable' or 'native', got 'fast'"),
     (["run"], {"BENCHBD_KERNELS": "fast"}, "BENCHBD_KERNELS must be 'portable' or 'native'")],
)  # fmt: skip
def test_a_bad_kernel_mode_is_one_line(args, env, message):
    done = subprocess.run([sys.executable, "-m", "benchbd", *args], env=clean_env(**env),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(f"benchbd: error: {message}")
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_spawned_sweep_workers_inherit_the_mode():
    """The sweep's process pool spawns its workers: they import benchbd afresh, before torch,
    from the environment this (pinned) process passes on."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        described = pool.submit(kernels.describe).result(timeout=300)
    assert described["mode"] == kernels.describe()["mode"] == "portable"
    assert described["mkl_cbwr"] == kernels.PINS["MKL_CBWR"]
    assert described["aten_capability"] == kernels.describe()["aten_capability"]


def test_levels_name_what_ran():
    assert kernels.level("portable", "AVX2", pinned=True) == "portable-avx2"
    assert kernels.level("portable", "AVX512", pinned=False) == "unpinned-avx512"
    assert kernels.level("portable", "DEFAULT", pinned=True) == "unpinned-default"
    assert kernels.level("native", "AVX512", pinned=False) == "native-avx512"


def write_reference() -> None:
    """Run the cell and commit what it gave: its result file and its poisoned weights' digest."""
    with tempfile.TemporaryDirectory() as workdir:
        described = child(DESCRIBE)
        if not described["exact_across_machines"]:
            sys.exit(f"portable kernels do not hold here: {described['note']}")
        path, _, weights = run_cell(Path(workdir))
        REFERENCE.mkdir(exist_ok=True)
        for old in REFERENCE.glob("*__*.json"):
            old.unlink()
        (REFERENCE / path.name).write_bytes(path.read_bytes())
        record = {"args": ARGS, "result": path.name, "poisoned_weights": weights,
                  "kernels": described}  # fmt: skip
        CELL.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {REFERENCE / path.name} and {CELL}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_portability.py --write")
    write_reference()
