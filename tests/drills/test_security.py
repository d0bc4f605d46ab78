"""Security drills on real services: a password-protected Redis (and a pickled message on it), model
files changed after registration, injection attempts through `topicq results`.

A pickled message on the plain Redis: tests/integration/test_end_to_end.py::
test_a_hand_built_json_message_is_classified_and_a_pickled_one_refused. The API key in DEBUG logs
and rows: tests/drills/test_429_storm.py (and tests/integration/test_gemini_worker.py at INFO, in Redis).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.drills import security
from testkit.drills.services import ServiceUnavailable
from testkit.missing_services import service_missing

pytestmark = pytest.mark.integration


def guarded(function, *args):  # type: ignore[no-untyped-def]
    try:
        return function(*args)
    except ServiceUnavailable as exc:
        service_missing("a drill service", exc)


def test_redis_with_a_password_works_end_to_end_and_the_password_stays_out_of_logs(tmp_path: Path) -> None:
    found = guarded(security.password_redis, security.SecuritySize(posts=200), tmp_path)
    book = found["book"]
    assert found["alive"] and not found["errors"] and not found["problems"], found
    assert book.lost == [] and book.statuses == {"done": 200}, found
    assert found["left"] == {"queued": 0, "in_flight": 0, "unacked": 0}
    assert found["password_in_log"] == 0 and found["log_lines"] > 50
    assert not found["open_door"]
    assert found["pickle_refused_in_log"] and not found["pickled_row"]


def test_model_files_changed_after_registration_are_refused(tmp_path: Path) -> None:
    found = guarded(security.tampered_model, tmp_path)
    assert found == {"weights_refused": True, "server_kept_good_version": True, "meta_refused": True,
                     "worker_refused": True}


def test_results_filters_are_parameterised(tmp_path: Path) -> None:
    found = guarded(security.injections, tmp_path)
    assert found["leaked"] == [] and found["changed"] is False and found["crashed"] == [], found

