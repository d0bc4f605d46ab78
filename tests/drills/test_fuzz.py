"""Given a worker, when malformed payloads are sent by task name among valid posts, then it survives,
records each malformed one with an id as `rejected`, logs the others, and classifies the valid ones."""

from __future__ import annotations

from tests.drills import fuzz


def test_fuzzed_payloads_are_rejected_and_their_neighbours_done(drill) -> None:
    result = drill(fuzz.run, fuzz.FuzzSize(malformed=500, valid=250))
    extra = result.extra
    assert extra["alive"], result.describe()
    assert result.lost == 0 and result.duplicates == 0, result.describe()
    assert extra["wrong"] == 0, result.describe()
    assert extra["warnings"] >= extra["expected_warnings"], result.describe()
    assert extra["undecodable"] >= 3 and extra["left"] == {"queued": 0, "in_flight": 0, "unacked": 0}, result.describe()
    assert result.failures == [], result.describe()
