"""docs/plugins.md's three example packages work as written: their files are taken from the
page, installed with pip, listed by `benchbd list`, and run in tiny experiments whose result
files name the plugins with their packages, versions and parameters: the attack against the
finetuning defense, and the screening defense against a built-in attack, its detection numbers
measured against the rows the attack poisoned.

pip installs them into a folder of the test's own (`--target`) that only the subprocesses see
on PYTHONPATH, so the Python environment running the test is never changed: nothing to
uninstall, and no other benchbd command on the machine sees the example plugins meanwhile."""

from __future__ import annotations

import ast
import json
import math
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from pathlib import Path

import pytest

import benchbd.api

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
# A fenced block whose first line is a comment naming the file it holds.
BLOCK = re.compile(r"^```[a-z]*\n# (?P<path>acme_\w+/\S+)\n(?P<body>.*?)^```", re.S | re.M)
PACKAGES = {"acme_sig": "acme-sig", "acme_shrink": "acme-shrink", "acme_dupes": "acme-dupes"}
FILES = {"acme_sig/pyproject.toml", "acme_sig/acme_sig/__init__.py",
         "acme_shrink/pyproject.toml", "acme_shrink/acme_shrink/__init__.py",
         "acme_dupes/pyproject.toml", "acme_dupes/acme_dupes/__init__.py",
         # the input detector's, installed and run by tests/test_input_plugin_guide.py
         "acme_confidence/pyproject.toml",
         "acme_confidence/acme_confidence/__init__.py"}  # fmt: skip
RUN = ["--attack", "acme_sig", "--defense", "acme_shrink", "--train-pairs", "256",
       "--clean-pairs", "128", "--test-images", "60", "--validation-images", "0",
       "--epochs", "1", "--batch-size", "64", "--threads", "1", "--device", "cpu",
       "--param", "acme_sig:delta=30", "--param", "attack.f=4", "--param", "anchor=0.05",
       "--param", "acme_shrink:epochs=1", "--param", "acme_shrink:batch_size=64",
       "--param", "acme_shrink:clean_pairs=0", "--param", "acme_shrink:warmup_steps=0"]  # fmt: skip
# 26 dirty-label poisons captioned from six prompt templates: their captions repeat
SCREEN_RUN = ["--attack", "badnet", "--defense", "acme_dupes", "--poison-rate", "0.1",
              "--train-pairs", "256", "--clean-pairs", "128", "--test-images", "60",
              "--validation-images", "0", "--epochs", "1", "--batch-size", "64",
              "--threads", "1", "--device", "cpu", "--param", "max_copies=3"]  # fmt: skip


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def example_files() -> dict[str, str]:
    """Every file of the guide's example packages, by its path, as the page writes it."""
    found: dict[str, str] = {}
    for match in BLOCK.finditer(GUIDE.read_text()):
        assert match["path"] not in found, f"{match['path']} is written twice in the guide"
        found[match["path"]] = f"# {match['path']}\n{match['body']}"
    return found


def in_this_environment() -> set[str]:
    """The example packages and plugin names that the test's own environment can see."""
    names = {ep.name for group in ("benchbd.attacks", "benchbd.defenses")
             for ep in entry_points(group=group)}  # fmt: skip
    seen = {name for name in PACKAGES if name in names}
    for package in PACKAGES.values():
        try:
            distribution(package)
            seen.add(package)
        except PackageNotFoundError:
            pass
    return seen


def call(args: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args[:4])} ...\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture
def installed(tmp_path):
    """The guide's packages, written to tmp_path and pip-installed into tmp_path/site; the
    environment for subprocesses that see them."""
    assert not in_this_environment(), "an example package is already installed here"
    files = example_files()
    assert set(files) == FILES
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "BENCHBD_CACHE": str(tmp_path / "cache"), "COLUMNS": "250",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}  # fmt: skip
    for package in PACKAGES:
        call([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
              "--no-index", "--target", str(site), str(tmp_path / package)], env,
             timeout=300)  # fmt: skip
    yield env
    assert not in_this_environment(), "the test changed the environment it runs in"


@pytest.mark.slow
def test_the_guides_example_packages_install_list_and_run(installed, tmp_path):
    env = installed
    listed = call([sys.executable, "-m", "benchbd", "list"], env, timeout=300).stdout
    for name, package in PACKAGES.items():  # its line names its package: [acme-sig] SIG...
        (line,) = [line for line in listed.splitlines() if line.split()[:1] == [name]]
        assert canonical(line.partition("[")[2].partition("]")[0]) == package, line
    assert "failed to load" not in listed, listed
    one = call([sys.executable, "-m", "benchbd", "list", "acme_sig"], env, timeout=300).stdout
    assert "SIG: a sinusoidal signal" in one and "delta" in one, one
    one = call([sys.executable, "-m", "benchbd", "list", "acme_shrink"], env, timeout=300).stdout
    assert "anchor" in one, one

    out = tmp_path / "out"
    call([sys.executable, "-m", "benchbd", "run", *RUN, "--out", str(out)], env, timeout=600)
    (path,) = out.glob("acme_sig__acme_shrink__seed0__*.json")
    result = json.loads(path.read_text())
    for role, name in (("attack", "acme_sig"), ("defense", "acme_shrink")):
        record = result[role]
        assert record["name"] == name
        assert canonical(record["package"]) == PACKAGES[name]
        assert record["version"] == "0.1.0"
        assert record["baseline"] is False
    # every parameter recorded, defaults included, as each --param form set it
    assert result["attack"]["params"] == {"delta": 30.0, "f": 4.0, "labels": "clean"}
    assert result["defense"]["params"] == {
        "anchor": 0.05, "clean_pairs": 0, "epochs": 1.0, "lr": 5e-4, "batch_size": 64,
        "weight_decay": 0.0, "warmup_steps": 0,
    }  # fmt: skip
    poison = result["poison"]
    assert poison["count"] == round(0.03 * 256) and len(poison["indices"]) == poison["count"]
    assert result["metrics"]["before"]["asr"] is not None
    report = result["extra"]["defense_report"]
    assert report["pairs"] == 128 and math.isfinite(report["final_loss"])
    assert report["distance"] > 0  # the defense trained the model it was given

    screened = tmp_path / "screened"
    call([sys.executable, "-m", "benchbd", "run", *SCREEN_RUN, "--out", str(screened)], env,
         timeout=600)  # fmt: skip
    (path,) = screened.glob("badnet__acme_dupes__seed0__*.json")
    result = json.loads(path.read_text())
    record = result["defense"]
    assert (record["name"], canonical(record["package"])) == ("acme_dupes", "acme-dupes")
    assert record["params"] == {"max_copies": 3} and record["baseline"] is False
    detection, dropped = result["metrics"]["detection"], result["extra"]["screen"]["dropped"]
    assert detection["scored"] == 256 and len(result["poison"]["indices"]) == 26
    # repeated captions are mostly the poisons' (the pipeline's numbers, from its own rows)
    assert detection["auroc"] > 0.9 and detection["poisons_removed"] > detection["clean_lost"]
    assert detection["dropped"] == len(dropped) == result["extra"]["defense_report"]["dropped"]
    assert result["extra"]["screen"]["kept"] == 256 - len(dropped)
    stage = result["extra"]["stage"]
    assert stage["stage"] == "screen"
    assert stage["model_fingerprint"] != result["poisoned_model_fingerprint"]


def python_blocks() -> list[str]:
    """Every fenced python block of the guide (the example packages' modules among them)."""
    return re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(), re.S | re.M)


def test_the_guides_code_imports_benchbd_through_benchbd_api_alone():
    """A plugin author copies the guide: its code reaches benchbd only through benchbd.api."""
    blocks = python_blocks()
    assert len(blocks) >= 4  # the parameters example and the three packages' modules
    through_api, elsewhere, names = 0, [], set()
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if module == "benchbd.api":
                    through_api += 1
                    names |= {alias.name for alias in node.names}
                elif module == "benchbd" or module.startswith("benchbd."):
                    elsewhere.append(module)
    assert not elsewhere, f"the guide's code imports {sorted(set(elsewhere))}"
    assert through_api >= len(blocks)  # every block takes what it uses from benchbd.api
    assert names <= set(benchbd.api.__all__), names - set(benchbd.api.__all__)
