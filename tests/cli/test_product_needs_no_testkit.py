"""The installed product runs without testkit: no module of cli/, worker/, trainer/ or shared/ imports it
(the demo's worker process is cli/worker_process.py; the fake Gemini server is a test tool)."""

from __future__ import annotations

import ast
from pathlib import Path

from click.testing import CliRunner

from cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_product_module_imports_testkit() -> None:
    offenders = [str(path.relative_to(ROOT))
                 for package in ("cli", "worker", "trainer", "shared") for path in (ROOT / package).rglob("*.py")
                 if any(name == "testkit" or name.startswith("testkit.") for name in imported_modules(path))]
    assert offenders == []


def test_the_fake_gemini_server_is_no_verb() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "fake-gemini" not in result.output
