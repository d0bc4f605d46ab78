"""A send stamp is judged against now: a monotonic clock's reading, a far-future or long-gone time
is removed and counted as bad, never turned into a latency."""

from __future__ import annotations

import json
import random
import time
from types import SimpleNamespace

import pytest

from shared.wire.envelope import inspect, valid_stamp
from shared.wire.protocol import CLASSIFY_TASK, MAX_CLOCK_SKEW_S, MAX_STAMP_AGE_S, SENT_AT_HEADER, TASKS
from testkit.drills.fuzz_cases import STAMPS, _stamped
from testkit.wire import envelope
from worker import metrics

NOW = 1_796_000_000.0  # late 2026
YEAR_5107 = 99_000_000_000.0


def checked(stamp: float) -> tuple[bool, bool]:
    """(counted bad, kept in the headers) for a message stamped `stamp`."""
    message = envelope(CLASSIFY_TASK, kwargs={"id": "p", "text": "rocket"})
    message["headers"][SENT_AT_HEADER] = stamp
    result = inspect(json.dumps(message), tasks=TASKS)
    return result.bad_stamp, SENT_AT_HEADER in result.message["headers"]


@pytest.mark.parametrize("stamp", [12345.6, YEAR_5107, 0.0])
def test_a_stamp_that_is_not_a_recent_time_is_removed_and_counted(stamp: float) -> None:
    assert checked(stamp) == (True, False)


@pytest.mark.parametrize("ago", [0.0, 3600.0, 3 * 86400.0, -60.0])
def test_a_recent_stamp_is_kept(ago: float) -> None:
    assert checked(time.time() - ago) == (False, True)


def test_the_window_is_judged_against_now() -> None:
    assert MAX_STAMP_AGE_S >= 86400 and 0 < MAX_CLOCK_SKEW_S <= 3600
    assert valid_stamp(NOW - MAX_STAMP_AGE_S + 1, now=NOW)
    assert not valid_stamp(NOW - MAX_STAMP_AGE_S - 1, now=NOW)
    assert valid_stamp(NOW + MAX_CLOCK_SKEW_S - 1, now=NOW)
    assert not valid_stamp(NOW + MAX_CLOCK_SKEW_S + 1, now=NOW)
    assert not valid_stamp(True, now=NOW) and not valid_stamp("1796000000", now=NOW)


def value(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(name) or 0.0


def test_latency_recording_ignores_a_stamp_out_of_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stamp the envelope never saw (a task called in-process) is judged when recorded too."""
    monkeypatch.setattr(metrics, "_enabled", True)
    names = ("topicq_end_to_end_seconds_count", "topicq_end_to_end_seconds_sum",
             "topicq_end_to_end_unstamped_total", "topicq_bad_send_stamps_total")
    before = {name: value(name) for name in names}
    rows = [SimpleNamespace(post_id=f"p{i}", status="done", model_name="m", model_version=1, score=0.9)
            for i in range(4)]
    report = SimpleNamespace(written=rows, retry=[], resend=[], model_name="m", model_version=1,
                             retry_reason=None)
    metrics.IN_PROGRESS.inc(4)
    metrics.batch_done(report, 4, {"p0": NOW - 2.0, "p1": 12345.6, "p2": NOW + 7200, "p3": NOW + 10},
                       now=NOW)
    delta = {name: value(name) - before[name] for name in names}
    assert delta["topicq_end_to_end_seconds_count"] == 2  # p0 and p3 (ahead within the skew: 0 s)
    assert delta["topicq_end_to_end_seconds_sum"] == pytest.approx(2.0)
    assert delta["topicq_end_to_end_unstamped_total"] == 2
    assert delta["topicq_bad_send_stamps_total"] == 2


@pytest.mark.parametrize("name", sorted(STAMPS))
def test_the_fuzz_drills_stamp_cases_are_ignored_not_refused(name: str) -> None:
    case = _stamped(f"stamp-{name}", STAMPS[name])(3, random.Random(3))
    result = inspect(case.list_entry("topicq"), tasks=TASKS)
    assert result.bad_stamp and SENT_AT_HEADER not in result.message["headers"]
    assert result.post_ids == ["fz-3"] and case.expect == "done"
