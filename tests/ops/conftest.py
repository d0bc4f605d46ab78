"""The settings a test worker runs with, seen from the test process too."""

from __future__ import annotations

import pytest

from shared.settings import Settings


@pytest.fixture
def settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()
