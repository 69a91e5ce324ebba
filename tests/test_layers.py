"""The house rules, checked over the source: benchbd is three layers on a shared core (engine,
reporting, command line), imports point one way, no module imports itself back through
others (module-level and function-level imports alike), no module grows past 400 lines, and
a plugin imports from benchbd.api alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"benchbd": ROOT / "benchbd", "benchbd.attacks": ROOT / "attacks",
           "benchbd.defenses": ROOT / "defenses"}  # fmt: skip

# What each layer may import (besides itself). The plugins may import benchbd.api only.
MAY_IMPORT = {
    "benchbd.core": set(),
    "benchbd.engine": {"benchbd.core"},
    "benchbd.reporting": {"benchbd.core"},
    "benchbd.api": {"benchbd.core", "benchbd.engine"},
    "benchbd.cli": {"benchbd.core", "benchbd.engine", "benchbd.reporting", "benchbd.api"},
    "benchbd.attacks": {"benchbd.api"},
    "benchbd.defenses": {"benchbd.api"},
    "benchbd.__main__": {"benchbd.cli"},
    "benchbd": {"benchbd.core"},
}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The benchbd modules `name` imports anywhere in its body (function-level included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def layer(name: str) -> str:
    for prefix in sorted(MAY_IMPORT, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            return prefix
    raise AssertionError(f"{name} is in no layer")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_imports_point_one_way():
    wrong = []
    for name, targets in graph().items():
        own = layer(name)
        for target in targets:
            allowed = layer(target) == own or layer(target) in MAY_IMPORT[own]
            if not allowed and target != "benchbd":
                wrong.append(f"{name} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_is_long():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}  # fmt: skip
    assert not long, f"modules over {MAX_LINES} lines: {long}"


FOLDER = ROOT / "results" / "digits"
READING_COMMANDS = {
    "table": ["table", str(FOLDER)],
    "claims": ["claims", str(ROOT / "results" / "claims.toml")],
    "plot": ["plot", str(FOLDER), "--out", "{tmp}/p.png"],
    "report": ["report", str(FOLDER), "--out", "{tmp}/site", "--no-triggers"],
}


@pytest.mark.parametrize("command", sorted(READING_COMMANDS))
def test_reporting_never_imports_the_training_engine(tmp_path, command):
    """`benchbd table`, `plot`, `report --no-triggers` and `claims` read result files: torch's
    training code and benchbd's engine are not imported to do it (a test run in a fresh
    interpreter, through the whole app as `from benchbd.cli import app` builds it)."""
    args = [arg.format(tmp=tmp_path) for arg in READING_COMMANDS[command]]
    script = (
        "import sys\n"
        "from benchbd.cli import app\n"
        "from typer.testing import CliRunner\n"
        f"result = CliRunner().invoke(app, {args!r})\n"
        "assert result.exit_code == 0, result.output\n"
        "engine = sorted(m for m in sys.modules if m.startswith('benchbd.engine'))\n"
        "print(engine)\n"
        "assert not engine, engine\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
