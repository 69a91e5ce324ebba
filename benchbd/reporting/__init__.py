"""Reporting: result files read as data, tables, curves, plots, the static site and claims.
It imports `benchbd.core` alone, never the engine: everything it shows comes from result
files."""
