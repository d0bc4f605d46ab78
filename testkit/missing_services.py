"""A service a test needs is down: skipped locally with the reason, failed in CI (CI=true).

In CI, .ci/run has started every service, so a missing one is a broken run, not a skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def service_missing(what: str, error: Exception) -> NoReturn:
    message = f"{what} is not reachable ({error.__class__.__name__}: {error})"
    if IN_CI:
        pytest.fail(f"{message}; CI must have it (.ci/run starts it)")
    pytest.skip(message)
