"""The house rules a command can check: ``cli/`` is imported by nobody else, a lower layer never
imports a higher one, no module over 500 lines and no function over 60 (docstring included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[2] / "src" / "netloom"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60
# low -> high; a module may import its own layer and the layers before it
LAYERS = [
    {"errors", "netns", "ratelimit", "model", "packet", "flows"},
    {"store", "sim"},
    {"datapath", "topology", "gateway", "insights"},
    {"api", "plan"},
    {"cluster", "agent", "deploy"},
    {"lab"},
    {"bench"},
    {"cli"},
]


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


def _layer(package: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if package in names)


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imported(tree: ast.Module) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("netloom."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("netloom.")}
    return out


def test_every_package_has_a_layer() -> None:
    packages = {_package(p) for p in _modules()} - {"__init__", "__main__"}
    assert packages <= set().union(*LAYERS), packages - set().union(*LAYERS)


def test_no_module_imports_a_higher_layer() -> None:
    wrong = []
    for path in _modules():
        me = _package(path)
        if me in ("__init__", "__main__"):
            continue
        for other in _imported(ast.parse(path.read_text())):
            if _layer(other) > _layer(me):
                wrong.append(f"{path.relative_to(SRC)} imports netloom.{other}")
    assert wrong == []


def test_modules_and_functions_are_small() -> None:
    big_files, big_functions = [], []
    for path in _modules():
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES:
            big_files.append(str(path.relative_to(SRC)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    big_functions.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    assert (big_files, big_functions) == ([], [])
