"""benchbd: a benchmark suite for backdoor attacks and defenses on CLIP-style models."""

from benchbd.core import kernels as _kernels

# First, before any benchbd module imports torch: the CPU kernels are pinned through
# environment variables that torch's libraries read once (benchbd/core/kernels.py).
_kernels.pin_at_import()

__version__ = "0.3.0"
