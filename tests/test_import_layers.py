"""Imports run one way, down the rooms (docs/architecture.md §1): a rule here is a wall in the code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (the modules under this folder, may never import a module under these)
WALLS = [
    ("shared", ("worker", "trainer", "cli", "testkit")),
    ("shared/wire", ("shared.model", "shared.improvement")),
    ("shared/model", ("shared.improvement",)),
    ("shared/database", ("shared.model", "shared.improvement", "shared.wire")),
    ("worker", ("trainer", "cli", "testkit")),
    ("trainer", ("worker", "cli", "testkit")),
    ("cli", ("testkit",)),
]


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at its top or inside a function: `from a.b import c` names a.b and a.b.c."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def crossings(folder: str, walls: tuple[str, ...]) -> list[str]:
    return sorted(f"{path.relative_to(ROOT)} imports {name}"
                  for path in (ROOT / folder).rglob("*.py") for name in imported_modules(path)
                  if any(name == wall or name.startswith(wall + ".") for wall in walls))


@pytest.mark.parametrize(("folder", "walls"), WALLS, ids=[folder for folder, _ in WALLS])
def test_no_import_crosses_a_wall(folder: str, walls: tuple[str, ...]) -> None:
    assert crossings(folder, walls) == []


def test_a_crossing_is_found(tmp_path: Path) -> None:
    """The check itself sees an import made inside a function, where a lazy import would hide it."""
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from worker.metrics import REGISTRY\n    import cli.main\n")
    assert {"worker.metrics", "worker.metrics.REGISTRY", "cli.main"} <= imported_modules(module)
