"""The version of each embedded data set: part of every dataset key, so the cached data and
every model and result fingerprint built on it change exactly when what it draws changes.

Until 0.3.0 a version was the hash of its module's whole text, so correcting a docstring
changed every fingerprint. Now each version is written here, beside a hash of its module's
code alone (`benchbd.core.cache.code_fingerprint`: docstrings and comments left out).
`tests/test_data_versions.py` fails when that code changes and the hash here does not: then
give the data set a new version (the results made with the old one no longer reproduce) and
record the new code hash. The versions keep the values the old scheme gave, so no existing
fingerprint changed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataVersion:
    version: str  # in every dataset key
    code: str  # code_fingerprint of the module that draws the data, when `version` was set
    module: str  # that module, relative to the package root


# The code hashes were renewed, versions kept, when the modules moved into benchbd.engine.data:
# only their import lines changed, nothing they draw. The digits' hash again when the split
# sizes moved into benchbd.engine.data.sizes (an import line).
SYNTHETIC = DataVersion("d04979645bdeae65", "124d83b257ed6f6e", "engine/data/synthetic.py")
DIGITS = DataVersion("e9c13dd2cee877dd", "5b7e21b3520a0418", "engine/data/digits.py")
