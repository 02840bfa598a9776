"""The layout the README promises: a ground floor of a few packages, modules and
functions that fit on a few screens, and imports that point one way only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests import support

SERVICE = support.ROOT / "service"
MAX_TOP_LEVEL = 12
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 50
#: The packages from the bottom up: each may import only from its own layer's package or
#: from layers below it (``service/__init__``, the entry points, may import anything).
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"base"}),
    frozenset({"state"}),
    frozenset({"config"}),
    frozenset({"bookkeeping"}),
    frozenset({"callers"}),
    frozenset({"tokens"}),
    frozenset({"voice", "account"}),
    frozenset({"http"}),
    frozenset({"serving"}),
    frozenset({"cli"}),
)


def modules() -> list[Path]:
    return sorted(SERVICE.rglob("*.py"))


def package_of(path: Path) -> str | None:
    parts = path.relative_to(SERVICE).parts
    return parts[0] if len(parts) > 1 else None


def layer_of(package: str) -> int:
    return next(index for index, layer in enumerate(LAYERS) if package in layer)


def imported_packages(path: Path) -> set[str]:
    """The service packages ``path`` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "service" and len(parts) > 1 and (SERVICE / parts[1]).is_dir():
                found.add(parts[1])
    return found


def test_the_ground_floor_is_a_few_packages() -> None:
    top = [entry.name for entry in SERVICE.iterdir() if entry.name != "__pycache__"]
    assert len(top) <= MAX_TOP_LEVEL, sorted(top)
    packages = {entry.name for entry in SERVICE.iterdir() if entry.is_dir()} - {"__pycache__"}
    assert packages == set().union(*LAYERS)  # every package has its place in the layers


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(SERVICE)))
def test_modules_and_functions_fit_on_a_few_screens(path: Path) -> None:
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(SERVICE)))
def test_imports_point_one_way(path: Path) -> None:
    package = package_of(path)
    if package is None:
        return  # service/__init__: the entry points, above everything
    upward = {
        other
        for other in imported_packages(path) - {package}
        if layer_of(other) >= layer_of(package)
    }
    assert upward == set(), f"{path.relative_to(SERVICE)} imports {sorted(upward)}"
