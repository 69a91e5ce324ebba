"""benchbd's built-in defenses, one module each, declared as `benchbd.defenses` entry points."""
