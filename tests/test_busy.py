"""The note a run or sweep prints when other processes already keep the machine's cores busy:
measured from real processes, and said in one line with what to do."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from benchbd.cli import app, busy

# A stand-in for a `benchbd` command that does what a sweep does: it idles while a worker it
# started (a plain `python -c`, as a spawned worker's command line is) keeps a core busy.
# Both stop by themselves within a minute, whatever happens to the test.
FAKE_BENCHBD = """
import subprocess, sys, time
spin = "import time\\nend = time.time() + 60\\nwhile time.time() < end: pass"
workers = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(int(sys.argv[1]))]
print(" ".join(str(w.pid) for w in workers), flush=True)
time.sleep(60)
"""


@pytest.fixture
def busy_sweep(tmp_path):
    """A fake `benchbd` process with one spinning worker per core; yields (its pid, workers)."""
    script = tmp_path / "benchbd"
    script.write_text(FAKE_BENCHBD)
    parent = subprocess.Popen([sys.executable, str(script), str(busy.usable_cores())],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    workers = [int(pid) for pid in parent.stdout.readline().split()]
    time.sleep(0.3)  # the workers are past their start-up
    yield parent.pid, workers
    for pid in workers:
        os.kill(pid, 9)
    parent.kill()
    parent.wait()


def test_commands_that_are_benchbd():
    assert busy.is_benchbd_command(["/venv/bin/benchbd", "run"])
    assert busy.is_benchbd_command(["python", "-m", "benchbd", "sweep"])
    assert busy.is_benchbd_command(["python3", "/venv/bin/benchbd", "run"])
    assert not busy.is_benchbd_command(["python", "-m", "pytest", "tests/test_busy.py"])
    assert not busy.is_benchbd_command(["vim", "benchbd/cli/busy.py"])
    assert not busy.is_benchbd_command([])


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_measure_counts_the_cores_others_use_and_names_benchbd_workers(busy_sweep):
    parent, workers = busy_sweep
    load = busy.measure(sample_s=1.0)
    assert load.cores == busy.usable_cores()
    # Every core has a spinning worker: whatever else runs, the others keep most cores busy.
    assert load.busy >= 0.5 * load.cores
    # The workers are benchbd's through their parent; the idle parent used no CPU.
    assert set(workers) & set(load.benchbd)
    assert parent not in load.benchbd
    assert os.getpid() not in load.benchbd


def test_note_only_when_the_threads_do_not_fit():
    idle = busy.Load(cores=8, busy=0.2)
    assert busy.note(idle, threads=8) is None
    half = busy.Load(cores=8, busy=4.0, benchbd=[101, 102])
    assert busy.note(half, threads=4) is None  # four free cores, four threads
    text = busy.note(half, threads=8)
    assert text.startswith("the machine is busy: other processes keep 4.0 of its 8 cores")
    assert "(2 benchbd processes: 101, 102)" in text
    assert "--threads 4" in text and "\n" not in text
    full = busy.note(busy.Load(cores=2, busy=2.0), threads=1)
    assert "start it when they finish" in full and "--threads" not in full
    assert "--threads" not in busy.note(half, threads=8, what="sweep")
    assert busy.note(None, threads=8) is None


@pytest.mark.slow  # a few seconds alone; far more beside a spinning worker on every core
@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_run_prints_the_note_before_it_starts(busy_sweep, tmp_path):
    """A run on a busy machine says so in one note line when training is about to start, and
    still runs."""
    cores = busy.usable_cores()
    ran = CliRunner().invoke(app, [
        "run", "--defense", "none", "--threads", str(cores), "--train-pairs", "128",
        "--clean-pairs", "32", "--test-images", "32", "--validation-images", "0",
        "--epochs", "1", "--batch-size", "64", "--device", "cpu", "--out", str(tmp_path),
    ])  # fmt: skip
    notes = [line for line in ran.output.splitlines() if "the machine is busy" in line]
    assert len(notes) == 1, ran.output
    assert ran.exit_code == 0 and "Traceback" not in ran.output
    assert len(list(tmp_path.glob("*.json"))) == 1


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_bad_input_on_a_busy_machine_is_still_one_line(busy_sweep, tmp_path):
    """The note is about work about to start: input refused before any work gets the error
    line alone."""
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--target", "no-such-class", "--train-pairs", "200",
                                 "--clean-pairs", "64", "--test-images", "40",
                                 "--validation-images", "20", "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("benchbd: error:"), result.output
