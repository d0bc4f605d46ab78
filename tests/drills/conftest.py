"""Drills run short in the normal suite; `python bench/drills.py` runs them long."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testkit.drills.harness import DrillResult
from testkit.drills.services import ServiceUnavailable
from testkit.missing_services import service_missing


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/drills/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.drill)
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def drill(tmp_path: Path) -> Callable[..., DrillResult]:
    """Run a drill function in tmp_path; a missing service skips locally and fails in CI."""
    def run(function: Callable[..., DrillResult], size: Any) -> DrillResult:
        try:
            result = function(size, tmp_path)
        except ServiceUnavailable as exc:
            service_missing("a drill service", exc)
            raise
        print(result.describe())
        return result

    return run
