"""Given a backfill in progress, when its worker is SIGKILLed and restarted, then nothing is lost."""

from __future__ import annotations

from testkit.drills import kill


def test_sigkill_during_backfill_loses_nothing(drill) -> None:
    result = drill(kill.run, kill.KillSize(posts=600, kills=3))
    assert result.faults == "3 SIGKILLs", result.describe()
    assert result.lost == 0 and result.duplicates == 0, result.describe()
    assert result.statuses == {"done": 600}, result.describe()
    assert any(result.extra["in_flight"]), result.describe()  # kills landed with messages unacknowledged
    assert result.failures == [], result.describe()  # incl. a second backfill sending nothing
