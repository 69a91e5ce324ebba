"""What every layer of benchbd shares: errors and suggestions, typed parameters, the plugin
registries, seeds, cache files and fingerprints, the CPU kernels, and the result-file schema.
It imports nothing else of benchbd."""
