"""Bad input anywhere a number, a name or a file is read: one line, exit 2, nothing trained.

Each case here was once accepted or crashed with an internal error: non-finite numbers passed
parameter bounds, a grid's type errors and plugin-section typos went unnoticed, an unusable
`--out` failed only after training, and a hostile checkpoint gave a multi-line refusal.
"""

from __future__ import annotations

import pickle

import pytest
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.core.cache import cache_dir

runner = CliRunner()
TINY_RUN = ["run", "--train-pairs", "256", "--clean-pairs", "256", "--test-images", "64"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def one_line_error(result, code=2):
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("benchbd: error:"), result.output
    assert not result.output.startswith("\n"), "no blank line before the error"
    return lines[0]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A cache of this test's own, so `nothing_trained` sees only what this test did."""
    monkeypatch.setenv("BENCHBD_CACHE", str(tmp_path / "cache"))


def nothing_trained() -> bool:
    return not list((cache_dir() / "models").glob("*.pt"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--attack", "blended", "--param", "alpha=nan"], "finite"),
        (["--attack", "blended", "--param", "alpha=inf"], "finite"),
        (["--attack", "wanet", "--param", "s=inf"], "finite"),
        (["--attack", "wanet", "--param", "s=-inf"], "finite"),
        (["--epochs", "inf"], "finite"),
        (["--epochs", "nan"], "finite"),
        (["--lr", "nan"], "finite"),
        (["--poison-rate", "nan"], "poison_rate"),
        (["--seed", "-1"], "seed"),
        (["--seed", str(2**70)], "seed"),
    ],
)
def test_non_finite_and_out_of_range_numbers_are_refused(tmp_path, args, message):
    out = tmp_path / "results"
    line = one_line_error(invoke(*TINY_RUN, *args, "--out", out))
    assert message in line
    assert not out.exists() or not list(out.iterdir())
    assert nothing_trained()


def test_a_defense_that_cannot_run_fails_before_pretraining(tmp_path):
    base = ["run", "--train-pairs", "256", "--clean-pairs", "64", "--test-images", "64"]
    for defense in ("cleanclip", "finetune", "cleanclip_supervised"):
        line = one_line_error(invoke(*base, "--defense", defense, "--out", tmp_path / "r"))
        assert "fewer than one batch of 128" in line and "--clean-pairs" in line
    assert nothing_trained()


@pytest.mark.parametrize("args", [["--jobs", "0"], ["--seeds", "1,x"], ["--attacks", "badnett"]])
def test_bad_sweep_options_are_one_line(tmp_path, args):
    one_line_error(invoke("sweep", *args, "--out", tmp_path / "r"))


def test_show_refuses_a_seed_that_does_not_fit(tmp_path):
    line = one_line_error(invoke("show", "--seed", str(10**23), "--out", tmp_path / "t.png"))
    assert "seed" in line


def test_out_that_is_a_file_or_unwritable_fails_before_training(tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    line = one_line_error(invoke(*TINY_RUN, "--out", a_file))
    assert "--out" in line and "not a folder" in line
    assert a_file.read_text() == "not a folder"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        probe = locked / "probe"
        try:
            probe.write_text("")
            probe.unlink()
            writable = True  # root ignores permission bits: nothing to test
        except OSError:
            writable = False
        if not writable:
            line = one_line_error(invoke(*TINY_RUN, "--out", locked / "sub"))
            assert "--out" in line
    finally:
        locked.chmod(0o700)
    assert nothing_trained()


def write_grid(tmp_path, text: str):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "grid, message",
    [
        (
            'attacks = ["badnet"]\n[attack_params.badnett]\npatch_fraction = 0.1\n',
            "[attack_params.badnett]: unknown attack 'badnett'; did you mean 'badnet'",
        ),
        (
            'defenses = ["finetune"]\n[defense_params.cleanclp]\nepochs = 1\n',
            "[defense_params.cleanclp]: unknown defense 'cleanclp'; did you mean 'cleanclip'",
        ),
        ("[attack_params]\nbadnet = 3\n", "[attack_params.badnet] must be a table"),
        ("attack_params = 3\n", "[attack_params] must be a table"),
        ('attacks = ["badnet"]\n[attack_params.blended]\nalphaa = 0.2\n', "alphaa"),
        ('attacks = ["blended"]\n[attack_params.blended]\nalpha = nan\n', "finite"),
        ('attacks = ["badnet"]\n[pretrain]\nepochs = inf\n', "finite"),
        ('attacks = ["badnet"]\n[pretrain]\nepochs = "8"\n', "epochs"),
        ('attacks = ["badnet"]\n[pretrain]\nepoch = 8\n', "did you mean 'epochs'"),
        ('attacks = ["badnet"]\n[run]\npoison_rate = "0.01"\n', "poison_rate"),
        ('attacks = ["badnet"]\n[run]\npoison_rate = nan\n', "poison_rate"),
        ('attacks = ["badnet"]\n[run]\ntarget = 3.5\n', "target"),
        ('attacks = ["badnet"]\n[sizes]\nclean = 2.5\n', "clean"),
        ('attacks = ["badnet"]\n[sizes]\nclean = true\n', "clean"),
        ('attacks = ["badnet"]\n[sizes]\ncleen = 2\n', "did you mean 'clean'"),
        ("attacks = 5\n", "attacks"),
        ('attacks = ["badnet", 3]\n', "attacks"),
        ("defenses = {a = 1}\n", "defenses"),
        ('attacks = ["badnet"]\nseeds = [true]\n', "seeds"),
        ('attacks = ["badnet"]\nseeds = "a"\n', "seeds"),
        ('attacks = ["badnet"]\nseeds = [1.5]\n', "seeds"),
        ('attacks = ["badnet"]\nseeds = [-1]\n', "seed"),
        ('attacks = ["badnet"]\n[run]\ndataset = 3\n', "dataset"),
    ],
)
def test_grid_errors_are_one_line_naming_the_place(tmp_path, grid, message):
    path = write_grid(tmp_path, grid)
    out = tmp_path / "results"
    line = one_line_error(invoke("sweep", "--grid", path, "--out", out))
    assert message in line
    assert nothing_trained()


def test_a_checkpoint_that_would_run_code_is_refused_in_one_line(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": Payload()}))
    result = invoke(*TINY_RUN, "--pretrained", evil, "--out", tmp_path / "r")
    line = one_line_error(result)
    assert "this must never run" not in result.output
    assert "weights_only" in line or "cannot be loaded safely" in line
