"""The engine: data, models, the training loop, evaluation, the run pipeline and its stages,
the model cache and sweeps. It imports `benchbd.core` alone, and names no concrete attack or
defense: those arrive through the registries."""
