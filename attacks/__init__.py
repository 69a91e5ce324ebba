"""benchbd's built-in attacks, one module each, declared as `benchbd.attacks` entry points."""
