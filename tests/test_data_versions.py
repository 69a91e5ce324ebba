"""The embedded data sets' versions: prose edits keep every fingerprint, code edits must not.

A data set's version is in the key of its cache, of every poisoned model trained on it and of
every result; the committed reference results rebuild to their fingerprints only while it is
unchanged. These tests fail when a generator's code changes without a new version, and show
that correcting a docstring or a comment changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

import benchbd
from benchbd.core.cache import code_fingerprint
from benchbd.engine.data import versions
from benchbd.engine.data.sources import SOURCES

PACKAGE = Path(benchbd.__file__).parent


@pytest.mark.parametrize("data", [versions.SYNTHETIC, versions.DIGITS], ids=["synthetic", "digits"])
def test_the_code_is_the_one_the_version_was_given_to(data):
    assert code_fingerprint(PACKAGE / data.module) == data.code, (
        f"{data.module} draws something new: give it a new version in "
        "benchbd/engine/data/versions.py and record its code hash there"
    )


def test_the_sources_use_the_recorded_versions():
    assert SOURCES["synthetic"].version == versions.SYNTHETIC.version == "d04979645bdeae65"
    assert SOURCES["digits"].version == versions.DIGITS.version


def test_prose_does_not_count_and_code_does(tmp_path):
    code = PACKAGE / versions.SYNTHETIC.module
    text = code.read_text()
    reworded = tmp_path / "reworded.py"
    reworded.write_text(text.replace('"""', '"""Reworded. ', 1) + "\n# a new comment\n")
    assert code_fingerprint(reworded) == code_fingerprint(code)
    changed = tmp_path / "changed.py"
    changed.write_text(text + "\nEXTRA_SHAPES = 1\n")
    assert code_fingerprint(changed) != code_fingerprint(code)
