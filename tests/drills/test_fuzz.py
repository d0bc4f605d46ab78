"""Given a worker, when malformed payloads and broken envelopes are pushed onto its list as raw entries
among valid posts, then it neither dies nor restarts its consumer, records each malformed post with an id as
`rejected`, moves every broken envelope to the dead-letter list, and classifies the valid posts."""

from __future__ import annotations

from testkit.drills import fuzz
from testkit.drills.fuzz_cases import ENVELOPE_BUILDERS


def test_fuzzed_messages_are_rejected_or_dead_lettered_and_their_neighbours_done(drill) -> None:
    result = drill(fuzz.run, fuzz.FuzzSize(malformed=300, valid=150, envelope=len(ENVELOPE_BUILDERS)))
    extra = result.extra
    assert extra["alive"] and extra["deaths"] == 0 and extra["restarts"] == 0, result.describe()
    assert result.lost == 0 and result.duplicates == 0, result.describe()
    assert extra["wrong"] == 0 and extra["good_done"] == extra["good"], result.describe()
    assert extra["warnings"] >= extra["expected_warnings"], result.describe()
    assert extra["dead_letters"] == extra["expected_dead"] >= len(ENVELOPE_BUILDERS), result.describe()
    assert extra["left"] == {"queued": 0, "in_flight": 0, "unacked": 0,
                             "dead_letters": extra["expected_dead"]}, result.describe()
    assert result.failures == [], result.describe()
