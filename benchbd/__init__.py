"""benchbd: a benchmark suite for backdoor attacks and defenses on CLIP-style models."""

__version__ = "0.2.0"
