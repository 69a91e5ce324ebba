"""A plugin name two packages declare: never resolved silently, picked as PACKAGE:NAME, and
two experiments (fingerprints, result files, table rows), not one. The second package is a real
distribution (dist-info with entry points) on sys.path, read by importlib.metadata."""

from __future__ import annotations

import sys
import textwrap
import uuid

import pytest

from benchbd.core.registry import PluginError, canonical_package
from benchbd.engine.plugins import attacks, clash_warnings
from benchbd.engine.run_config import RunConfig
from benchbd.reporting.experiments import settings

TINY = {"train": 256, "clean": 64, "test": 40, "validation": 0}


@pytest.fixture
def other_sig(tmp_path):
    """A distribution `other-sig-<tag>` declaring an attack named `sig`, as benchbd does."""
    tag = uuid.uuid4().hex[:8]
    module, package = f"othersig_{tag}", f"Other_Sig.{tag}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        from benchbd.api import Attack

        class Sig(Attack):
            description = "another package's sig"

            def apply_trigger(self, images, generator):
                out = images.clone()
                out[:, :, 0, :] = 255
                return out
        """))  # fmt: skip
    dist = tmp_path / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[benchbd.attacks]\nsig = {module}:Sig\n")
    sys.path.insert(0, str(tmp_path))
    attacks.refresh()
    try:
        yield package
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(module, None)
        attacks.refresh()


def test_the_bare_name_is_refused_with_both_packages_named(other_sig):
    with pytest.raises(PluginError, match=rf"'benchbd' and '{other_sig}'.*name one as benchbd:sig"):
        attacks.get("sig")
    assert "benchbd:sig" in attacks.names() and f"{other_sig}:sig" in attacks.names()
    assert "sig" not in attacks.names()
    (line,) = [w for w in clash_warnings() if "'sig'" in w]
    assert "benchbd" in line and other_sig in line


def test_a_qualified_name_picks_one_whatever_the_spelling_of_its_package(other_sig):
    assert attacks.get("benchbd:sig").__module__ == "benchbd.attacks.sig"
    assert attacks.get(f"{other_sig}:sig").description == "another package's sig"
    assert attacks.get(f"{canonical_package(other_sig)}:sig") is attacks.get(f"{other_sig}:sig")
    with pytest.raises(PluginError, match="provides no attack 'sig'"):
        attacks.get("nobody:sig")


def test_two_packages_plugins_are_two_experiments(other_sig):
    from benchbd.engine.planning import plan

    builtin = plan(RunConfig(attack="benchbd:sig", defense="none", sizes=TINY))
    other = plan(RunConfig(attack=f"{other_sig}:sig", defense="none", sizes=TINY))
    assert builtin[0] != other[0] and builtin[1] != other[1]


def test_a_builtin_plugin_named_with_its_package_is_the_same_experiment():
    from benchbd.engine.planning import plan

    assert plan(RunConfig(attack="benchbd:sig", defense="benchbd:none", sizes=TINY)) == plan(
        RunConfig(attack="sig", defense="none", sizes=TINY)
    )


def test_result_rows_split_by_package():
    base = {"attack": {"name": "sig", "package": "benchbd", "params": {}}, "seed": 0}
    other = {**base, "attack": {**base["attack"], "package": "other-sig", "version": "2.0"}}
    assert settings(base) != settings(other)
    assert settings(base)["attack.package"] == '"benchbd"'
