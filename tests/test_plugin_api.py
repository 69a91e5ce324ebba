"""benchbd.api, the one module plugins import from: it names what the built-in plugins use, and
its cache for a plugin's artefact names files as the model cache does and reads a damaged one as
missing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import benchbd.api as api
from benchbd.core.cache import fingerprint
from benchbd.engine.model_cache import models_dir

ROOT = Path(__file__).resolve().parents[1]


def test_every_exported_name_is_there_once():
    assert len(api.__all__) == len(set(api.__all__))
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert not missing, missing


def test_the_built_in_plugins_find_all_they_import_in_the_api():
    """What each built-in plugin takes from benchbd.api is exported there (and nothing else
    in benchbd but another plugin is imported: tests/test_layers.py says so too)."""
    wanted = set()
    for path in [*(ROOT / "attacks").glob("*.py"), *(ROOT / "defenses").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "benchbd.api":
                wanted |= {alias.name for alias in node.names}
    assert {"Attack", "Defense", "artefact_path", "world", "attacks"} <= wanted
    assert wanted <= set(api.__all__), wanted - set(api.__all__)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHBD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_an_artefact_is_named_by_its_kind_and_a_fingerprint_of_its_key(cache):
    key = {"version": 1, "seed": 3, "params": {"steps": 8.0}}
    path = api.artefact_path("acme-patch", key)
    assert path == models_dir() / f"acme-patch-{fingerprint(key)}.pt"
    assert path.parent == cache / "models" and not path.exists()
    # equal settings written differently are one key; another setting is another file
    assert api.artefact_path("acme-patch", {**key, "params": {"steps": 8}}) == path
    assert api.artefact_path("acme-patch", {**key, "seed": 4}) != path
    assert api.artefact_path("acme_other", key) != path


@pytest.mark.parametrize("kind", ["", "../escape", "a/b", "patch.v2", "-leading"])
def test_a_kind_that_is_not_a_plain_name_is_refused(cache, kind):
    with pytest.raises(ValueError, match="artefact kind"):
        api.artefact_path(kind, {})


def test_an_artefact_is_saved_and_loaded_and_a_damaged_one_reads_as_missing(cache):
    path = api.artefact_path("acme-patch", {"seed": 0})
    assert api.load_artefact(path) is None  # not computed yet
    patch = torch.arange(12, dtype=torch.uint8).reshape(3, 2, 2)
    api.save_artefact(path, {"patch": patch, "pool": "abc"})
    state = api.load_artefact(path)
    assert torch.equal(state["patch"], patch) and state["pool"] == "abc"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    path.write_bytes(path.read_bytes()[:20])  # truncated
    assert api.load_artefact(path) is None
    path.write_bytes(b"not a tensor file")
    assert api.load_artefact(path) is None
