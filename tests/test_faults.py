"""Fault injection: runs and sweeps killed at random points, damaged caches and result files,
malformed input. After each fault the next command either succeeds with the numbers an
uninterrupted run gives, or prints one clear line; no process, temporary file or half-written
file is left behind.

Everything here runs the real `benchbd` command in a subprocess (signals need a process of
their own) on tiny settings; the whole file is marked `slow`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TINY = ["--train-pairs", "512", "--clean-pairs", "128", "--test-images", "100",
        "--epochs", "3", "--batch-size", "64", "--threads", "1"]  # fmt: skip
FINETUNE = ["--defense", "finetune", "--param", "batch_size=64", "--param", "epochs=2"]
GRID = """attacks = ["badnet"]
defenses = ["none", "finetune"]
seeds = [0, 1]
[sizes]
train = 512
clean = 128
test = 100
[pretrain]
epochs = 3
batch_size = 64
[defense_params.finetune]
batch_size = 64
epochs = 2
"""


def env_for(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCHBD_")}
    env |= {"BENCHBD_CACHE": str(cache), "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return env


def benchbd(*args, cache: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "benchbd", *map(str, args)],
        env=env_for(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, **kwargs,
    )  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def run_ok(*args, cache: Path) -> str:
    code, out, err = finish(benchbd(*args, cache=cache))
    assert code == 0, err
    return err


def leftovers(*folders: Path) -> list[Path]:
    """Temporary files and folders anywhere below `folders` (atomic writes use `.*.tmp`)."""
    found = []
    for folder in folders:
        if folder.exists():
            found += [p for p in folder.rglob("*.tmp")]
    return found


def results_in(folder: Path) -> dict[str, dict]:
    """Every result file in `folder`, each parsed: a half-written file fails here."""
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def metrics(result: dict) -> dict:
    return result["metrics"]


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def gone(pids: list[int], within_s: float = 10.0) -> bool:
    """Whether every process in `pids` has exited within `within_s` seconds (the workers poll
    their parent twice a second; multiprocessing's helper process exits when its pipe closes)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.2)
    return not any(alive(pid) for pid in pids)


def parallel_sweep(tmp_path: Path, wanted: int):
    """`sweep --jobs 2` on the tiny grid, once `wanted` of its workers are alive (or after two
    minutes): the grid file, out and cache folders, the sweep process and its worker pids."""
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    out, cache = tmp_path / "out", tmp_path / "cache"
    process = benchbd("sweep", "--grid", grid, "--jobs", "2", "--out", out, cache=cache)
    workers: list[int] = []
    deadline = time.monotonic() + 120
    # cells claimed (so submitted) and the worker processes up: the sweep is running cells
    while time.monotonic() < deadline and (
        len(workers) < wanted or not list(out.glob(".locks/*.lock"))
    ):
        workers = [pid for pid in children_of(process.pid) if alive(pid)]
        time.sleep(0.2)
    return grid, out, cache, process, workers


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: the numbers every interrupted-then-resumed run must give, and
    how long a run takes (to pick kill points inside it)."""
    root = tmp_path_factory.mktemp("reference")
    start = time.monotonic()
    run_ok("run", *TINY, *FINETUNE, "--out", root / "out", cache=root / "cache")
    seconds = time.monotonic() - start
    (result,) = results_in(root / "out").values()
    return result, seconds


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_a_run_killed_at_a_random_point_leaves_nothing_and_resumes(tmp_path, reference, signum):
    expected, seconds = reference
    out, cache = tmp_path / "out", tmp_path / "cache"
    delay = random.Random(int(signum)).uniform(0.25, 0.6) * seconds
    process = benchbd("run", *TINY, *FINETUNE, "--out", out, cache=cache)
    time.sleep(delay)
    process.send_signal(signum)
    code, _, err = finish(process)
    finished = out.exists() and any(out.glob("*.json"))
    if code != 0 and not finished:  # the signal landed before the run wrote its result
        # 128 + n, or -n where the interpreter re-raised the signal to exit (shells show both
        # as 128 + n)
        assert code in (-signum, 128 + signum) if signum != signal.SIGKILL else code == -9
        if signum != signal.SIGKILL:
            assert last_line(err).startswith("benchbd: error:"), err
            assert "Traceback" not in err
            assert not leftovers(out, cache), "a clean shutdown removes its temporary files"
    assert all(isinstance(r, dict) for r in results_in(out).values()) if out.exists() else True
    # The same command again: the numbers of an uninterrupted run, and nothing left over.
    run_ok("run", *TINY, *FINETUNE, "--out", out, cache=cache)
    (result,) = results_in(out).values()
    assert metrics(result) == metrics(expected)
    assert result["fingerprint"] == expected["fingerprint"]
    assert not leftovers(out, cache)


def test_a_killed_sweep_takes_its_workers_with_it_and_resumes(tmp_path, reference):
    expected, _ = reference
    grid, out, cache, process, workers = parallel_sweep(tmp_path, wanted=2)
    assert workers, "the sweep started no worker processes"
    time.sleep(random.Random(1).uniform(2, 6))  # somewhere inside the first cells
    process.send_signal(signal.SIGKILL)
    finish(process)
    assert gone(workers), "workers outlived the killed sweep"
    written = sorted(p.name for p in out.glob("*.json"))
    time.sleep(3)
    assert sorted(p.name for p in out.glob("*.json")) == written, "a result appeared later"
    # The same sweep again finishes every cell; stale temporary files are cleared.
    code, _, err = finish(benchbd("sweep", "--grid", grid, "--jobs", "2", "--out", out,
                                  cache=cache))  # fmt: skip
    assert code == 0, err
    results = results_in(out)
    assert len(results) == 4
    assert not leftovers(out, cache)
    # Cells are the same experiments as single runs: badnet / finetune / seed 0 matches.
    (cell,) = [r for r in results.values()
               if r["defense"]["name"] == "finetune" and r["seed"] == 0]  # fmt: skip
    assert metrics(cell) == metrics(expected)


@pytest.mark.parametrize("when", ["data", "training"])
def test_sigterm_stops_a_parallel_sweep_cleanly(tmp_path, when):
    """Stopped in the first cells' data (2 s after they start), or in the training of the
    later cells (as soon as a first cell has written its result: a fixed delay would miss the
    sweep on an idle machine, where the whole tiny grid takes a few seconds)."""
    _, out, _, process, workers = parallel_sweep(tmp_path, wanted=1)
    if when == "data":
        time.sleep(2)
    else:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("*.json")):
            time.sleep(0.05)
        assert process.poll() is None, "the sweep ended before a later cell was stopped"
    process.send_signal(signal.SIGTERM)
    code, _, err = finish(process, timeout=60)
    assert code == 128 + signal.SIGTERM, err
    assert "resumes" in last_line(err) and last_line(err).startswith("benchbd: error:")
    # nothing after the error line: no resource_tracker warning about leaked semaphores
    assert err.rstrip().endswith(last_line(err)) and "Warning" not in err, err
    assert gone(workers), "workers outlived the stopped sweep"
    assert not leftovers(out)


def test_damaged_cache_entries_are_noted_and_rebuilt(tmp_path, reference):
    expected, _ = reference
    out, cache = tmp_path / "out", tmp_path / "cache"
    run_ok("run", *TINY, *FINETUNE, "--out", out, cache=cache)
    (checkpoint,) = (cache / "models").glob("*.pt")
    data = checkpoint.read_bytes()
    damages = {
        "truncated checkpoint": lambda: checkpoint.write_bytes(data[: len(data) // 2]),
        "checkpoint of zeros": lambda: checkpoint.write_bytes(bytes(len(data))),
        "garbage record": lambda: checkpoint.with_suffix(".json").write_text("{oops"),
        "dataset file": lambda: next((cache / "datasets").rglob("*.arrow")).write_bytes(b"x"),
    }
    for what, damage in damages.items():
        damage()
        err = run_ok("run", *TINY, *FINETUNE, "--out", out, cache=cache)
        assert "damaged" in err and "again" in err, f"{what}: {err}"
        (result,) = results_in(out).values()
        assert metrics(result) == metrics(expected), what
        assert checkpoint.read_bytes() == data, f"{what}: the rebuilt model differs"
    # Now intact: the next run reuses it without a note.
    err = run_ok("run", *TINY, *FINETUNE, "--out", out, cache=cache)
    assert "damaged" not in err and "reusing cached poisoned model" in err


def test_damaged_result_files_are_rerun_by_a_sweep_and_skipped_by_table(tmp_path, reference):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.replace('defenses = ["none", "finetune"]', 'defenses = ["finetune"]')
                    .replace("seeds = [0, 1]", "seeds = [0]"))  # fmt: skip
    out, cache = tmp_path / "out", tmp_path / "cache"
    code, _, err = finish(benchbd("sweep", "--grid", grid, "--out", out, cache=cache))
    assert code == 0, err
    (path,) = out.glob("*.json")
    good = path.read_text()
    path.write_text(good[: len(good) // 3])  # a file cut short by a disk error
    (out / "notes.json").write_text('{"attack": 5, "defense": [], "metrics": "x", '
                                    '"seed": "a", "schema_version": 1}')  # fmt: skip
    code, _, err = finish(benchbd("table", out, cache=cache))
    assert code == 2 and last_line(err).startswith("benchbd: error:"), err
    code, _, err = finish(benchbd("sweep", "--grid", grid, "--out", out, cache=cache))
    assert code == 0, err
    assert json.loads(path.read_text())["metrics"] == json.loads(good)["metrics"]
    code, table, err = finish(benchbd("table", out, "--format", "csv", cache=cache))
    assert code == 0 and "finetune" in table
    assert "warning" in err and "notes.json" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args, files, message",
    [
        (["sweep", "--grid", "g.toml"], {"g.toml": "attacks = [\n"}, "not valid TOML"),
        (["sweep", "--grid", "g.toml"], {"g.toml": "[attack_params.badnett]\n"}, "badnet"),
        (["sweep", "--grid", "g.toml"], {"g.toml": b"\xff\xfe"}, "UTF-8"),
        (["run", "--dataset", "csv:d/pairs.csv"], {"d/pairs.csv": "image,caption\n"}, ""),
        (["run", "--dataset", "csv:d/pairs.csv"], {"d/pairs.csv": b"\x00\x01garbage"}, ""),
        (["run", "--dataset", "csv:d/missing.csv"], {}, "missing.csv"),
        (["table", "r"], {"r/a.json": "[1, 2]", "r/b.json": "{"}, "not a benchbd result"),
        # usage errors: one line too, not typer's boxed usage block
        (["sweep", "--thread", "1"], {}, "no such option: --thread"),
        (["run", "--seed", "x"], {}, "--seed"),
        (["table", "r", "--bogus"], {}, "--bogus"),
    ],
)
def test_malformed_input_is_one_line(tmp_path, args, files, message):
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    code, _, err = finish(benchbd(*args, cache=tmp_path / "cache", cwd=tmp_path))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert lines and lines[-1].startswith("benchbd: error:") and message in lines[-1], err
    assert all(line.startswith("benchbd: ") for line in lines), err
    assert "Traceback" not in err
    assert not list((tmp_path / "cache").rglob("*.pt"))


# --- round two: plugin name clashes, pretrained weights, two sweeps on one folder -------------

CLASH = """from benchbd.api import Attack


class Sig(Attack):
    description = "another package's sig: a white top row"

    def apply_trigger(self, images, generator):
        out = images.clone()
        out[:, :, 0, :] = 255
        return out
"""


def clashing_package(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A real second distribution (dist-info with entry points, on PYTHONPATH) declaring an
    attack named `sig`, like the built-in one: its name, and the environment that sees it."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "othersig.py").write_text(CLASH)
    dist = site / "other_sig-2.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: other-sig\nVersion: 2.0\n")
    (dist / "entry_points.txt").write_text("[benchbd.attacks]\nsig = othersig:Sig\n")
    root = Path(__file__).resolve().parent.parent
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(root)])}
    return "other-sig", env


def benchbd_with(env: dict[str, str], *args, cache: Path) -> tuple[int, str, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchbd", *map(str, args)], env=env_for(cache) | env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return finish(process)


def test_a_plugin_name_two_packages_declare_is_reported_and_picked_by_package(tmp_path):
    package, env = clashing_package(tmp_path)
    cache, out = tmp_path / "cache", tmp_path / "out"
    both = ("'benchbd'", f"'{package}'")
    code, listed, err = benchbd_with(env, "list", "attacks", cache=cache)
    assert code == 0, err
    assert all(name in err for name in both) and "benchbd: warning:" in err, err
    assert "benchbd:sig" in listed and f"{package}:sig" in listed, listed
    for args in (["run", "--attack", "sig", *TINY], ["sweep", "--attacks", "sig", "--out", out]):
        code, _, err = benchbd_with(env, *args, cache=cache)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and all(name in lines[-1] for name in both), err
        assert "name one as benchbd:sig or other-sig:sig" in lines[-1], err
        assert all(line.startswith("benchbd: ") for line in lines), err
    assert not out.exists() or not list(out.glob("*.json"))
    # Each picked by its package: two result files, each naming its package, two experiments.
    for name in ("benchbd:sig", f"{package}:sig"):
        code, _, err = benchbd_with(env, "run", "--attack", name, "--defense", "none", *TINY,
                                    "--out", out, cache=cache)  # fmt: skip
        assert code == 0, err
    results = list(results_in(out).values())
    assert sorted(r["attack"]["package"] for r in results) == ["benchbd", package]
    assert len({r["poisoned_model_fingerprint"] for r in results}) == 2
    assert {r["attack"]["name"] for r in results} == {"sig"}
    code, table, err = benchbd_with(env, "table", out, "--format", "csv", cache=cache)
    assert code == 0, err
    rows = [row for row in csv.DictReader(io.StringIO(table)) if row["attack"] == "sig"]
    # one row per package, never one mean over both
    assert sorted(row["attack.package"] for row in rows) == ["benchbd", package], table
    # The built-in one, named with its package, is the experiment `sig` always was.
    code, _, err = benchbd_with({}, "run", "--attack", "sig", "--defense", "none", *TINY,
                                "--out", tmp_path / "plain", cache=cache)  # fmt: skip
    assert code == 0, err
    (plain,) = results_in(tmp_path / "plain").values()
    (builtin,) = [r for r in results if r["attack"]["package"] == "benchbd"]
    assert plain["fingerprint"] == builtin["fingerprint"]


def test_unavailable_pretrained_weights_are_refused_before_any_data(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "HOME": str(tmp_path / "home")}  # fmt: skip
    cache = tmp_path / "cache"
    grid = tmp_path / "grid.toml"
    grid.write_text('attacks = ["badnet"]\ndefenses = ["none"]\n[run]\nmodel = "RN50"\n'
                    'pretrained = "openai"\n')  # fmt: skip
    for args in (["run", "--model", "RN50", "--pretrained", "openai"],
                 ["sweep", "--grid", grid, "--out", tmp_path / "out"]):  # fmt: skip
        code, _, err = benchbd_with(env, *args, cache=cache)
        assert code == 2 and "cannot be downloaded" in last_line(err), err
        assert "Traceback" not in err
        # before any data: the default sizes at 224 px took minutes, and the error came after
        assert not (cache / "datasets").exists(), "data was made before the weights were checked"


@pytest.mark.parametrize("jobs", [1, 2])
def test_two_sweeps_on_one_folder_make_each_cell_and_model_once(tmp_path, jobs):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ("sweep", "--grid", grid, "--out", out, "--jobs", jobs)
    first = benchbd(*args, cache=cache)
    time.sleep(0.5)
    second = benchbd(*args, cache=cache)
    runs = [finish(first), finish(second)]
    for code, _, err in runs:
        assert code == 0, err
    started = [line.split()[2] for _, _, err in runs for line in err.splitlines()
               if line.startswith("benchbd: started ")]  # fmt: skip
    assert sorted(started) == sorted(set(started)) and len(started) == 4, started
    results = list(results_in(out).values())
    assert len(results) == 4
    trained = [r for r in results if not r["pretrain_cached"]]
    assert len(trained) == 2, "a poisoned model was trained twice"
    assert sorted(r["seed"] for r in trained) == [0, 1]
    assert not list(out.rglob("*.lock")) and not list(cache.rglob("*.lock")), "claims left"
    assert not leftovers(out, cache)


def test_a_claim_whose_owner_is_gone_is_taken_over(tmp_path):
    """A sweep SIGKILLed mid-cell leaves its claim: the next sweep takes it over."""
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.replace("seeds = [0, 1]", "seeds = [0]"))
    out, cache = tmp_path / "out", tmp_path / "cache"
    process = benchbd("sweep", "--grid", grid, "--out", out, cache=cache)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob(".locks/*.lock")):
        time.sleep(0.2)
    assert list(out.glob(".locks/*.lock")), "the sweep claimed no cell"
    process.send_signal(signal.SIGKILL)
    finish(process)
    (claim,) = out.glob(".locks/*.lock")
    assert json.loads(claim.read_text())["pid"] == process.pid
    code, _, err = finish(benchbd("sweep", "--grid", grid, "--out", out, cache=cache))
    assert code == 0, err
    assert len(results_in(out)) == 2 and not list(out.rglob("*.lock"))
