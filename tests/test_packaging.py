"""What installing benchbd puts on a machine: one top-level package, `benchbd`, with the
built-in plugins inside it (`benchbd.attacks`, `benchbd.defenses` from the repository's
top-level folders), every subpackage listed, and the model configs as package data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
SETUP = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def source_packages() -> set[str]:
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "benchbd").rglob("__init__.py")}  # fmt: skip
    for name, folder in SETUP["package-dir"].items():
        found |= {".".join((name, *p.parent.relative_to(ROOT / folder).parts))
                  for p in (ROOT / folder).rglob("__init__.py")}  # fmt: skip
    return found


def test_every_package_is_listed_and_the_plugins_sit_inside_benchbd():
    assert set(SETUP["packages"]) == source_packages()
    assert SETUP["package-dir"] == {"benchbd.attacks": "attacks", "benchbd.defenses": "defenses"}
    assert all(name == "benchbd" or name.startswith("benchbd.") for name in SETUP["packages"])


def test_every_entry_point_names_a_module_inside_benchbd():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for group in ("benchbd.attacks", "benchbd.defenses"):
        for name, target in project["entry-points"][group].items():
            assert target.startswith(f"{group}."), (name, target)


@pytest.mark.slow
def test_the_wheel_holds_benchbd_alone(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                    "-w", str(tmp_path)], check=True)  # fmt: skip
    (wheel,) = tmp_path.glob("benchbd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = wheel.name.split("-py")[0] + ".dist-info"
    assert {n.split("/")[0] for n in names} == {"benchbd", dist_info}
    assert "benchbd/attacks/badnet.py" in names and "benchbd/defenses/cleanclip.py" in names
    assert "benchbd/engine/model_configs/benchbd-rn-tiny.json" in names
