"""Plugin discovery through entry points: built-ins, third-party packages, broken plugins."""

from __future__ import annotations

import sys
import textwrap
import uuid
from dataclasses import dataclass

import pytest

from benchbd.core.registry import PluginError, Registry
from benchbd.engine.plugins import Attack, attacks, defenses


def test_builtin_plugins_come_through_entry_points():
    assert {"none", "badnet"} <= set(attacks.names())
    assert {"none", "finetune"} <= set(defenses.names())
    assert attacks.origin("badnet") == "benchbd"
    assert issubclass(attacks.get("badnet"), Attack)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(PluginError, match="did you mean 'badnet'"):
        attacks.get("badnett")
    with pytest.raises(PluginError, match="unknown defense 'finetuen'.*'finetune'"):
        defenses.get("finetuen")


@dataclass(frozen=True)
class ThirdParty:
    """A package written for one test: its registry view, distribution and plugin names."""

    registry: Registry
    package: str
    stripe: str
    broken: str
    helper: str


@pytest.fixture
def third_party_package(tmp_path, monkeypatch):
    """An installed-looking distribution (dist-info with entry points) on sys.path. Its module,
    distribution and plugin names are new for every test, so that no package installed on the
    machine (or left by another test) can answer in its place."""
    tag = uuid.uuid4().hex[:8]
    module, package = f"thirdparty_{tag}", f"thirdparty-{tag}"
    plugins = ThirdParty(Registry("benchbd.attacks", Attack), package, f"stripe_{tag}",
                         f"broken_{tag}", f"helper_{tag}")  # fmt: skip
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from benchbd.api import Attack

            class Stripe(Attack):
                description = "a test attack from another package"

                def apply_trigger(self, images, generator):
                    out = images.clone()
                    out[:, :, 0, :] = 255
                    return out

            def helper():
                return None
            """
        )
    )
    dist = tmp_path / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[benchbd.attacks]\n{plugins.stripe} = {module}:Stripe\n"
        f"{plugins.broken} = {module}_missing:X\n{plugins.helper} = {module}:helper\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield plugins
    sys.modules.pop(module, None)


def test_a_package_installed_later_is_discovered(third_party_package):
    plugins = third_party_package
    registry = plugins.registry
    assert plugins.stripe in registry.names() and "badnet" in registry.names()
    assert registry.origin(plugins.stripe) == plugins.package
    assert registry.get(plugins.stripe).description == "a test attack from another package"


def test_a_broken_plugin_is_reported_with_its_package_and_others_still_work(third_party_package):
    plugins = third_party_package
    failed = f"'{plugins.broken}' from package '{plugins.package}' failed to load"
    with pytest.raises(PluginError, match=failed):
        plugins.registry.get(plugins.broken)
    assert plugins.registry.get("badnet").__name__ == "BadNet"


def test_register_in_process_and_unregister():
    class Marker(Attack):
        def apply_trigger(self, images, generator):
            return images

    attacks.register("marker", Marker, package="tests")
    try:
        assert attacks.get("marker") is Marker and attacks.origin("marker") == "tests"
    finally:
        attacks.unregister("marker")
    assert "marker" not in attacks.names()


def test_an_entry_point_that_is_not_an_attack_is_refused(third_party_package):
    plugins = third_party_package
    with pytest.raises(PluginError, match=f"'{plugins.helper}' from package '{plugins.package}'"
                                          " is not"):  # fmt: skip
        plugins.registry.get(plugins.helper)


def test_list_command_reports_a_broken_plugin_and_lists_the_rest(third_party_package):
    from typer.testing import CliRunner

    from benchbd.cli import app

    attacks.refresh()
    try:
        result = CliRunner().invoke(app, ["list", "attacks"], env={"COLUMNS": "250"})
    finally:
        attacks.refresh()
    assert result.exit_code == 0, result.output
    plugins = third_party_package
    assert "failed to load" in result.output and plugins.package in result.output
    assert plugins.stripe in result.output and "badnet" in result.output
