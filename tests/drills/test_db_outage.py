"""Given posts flowing, when PostgreSQL is stopped for ~10 s and started again, then the run
completes with every post recorded, and the outage does not turn posts into `failed`."""

from __future__ import annotations

from testkit.drills import outage


def test_database_outage_loses_nothing_and_fails_nothing(drill) -> None:
    result = drill(outage.run, outage.OutageSize(posts=400, outage_s=10))
    extra = result.extra
    assert extra["alive"] and not extra["errors"], result.describe()
    assert result.lost == 0 and result.duplicates == 0, result.describe()
    assert result.statuses == {"done": 400 - extra["malformed"], "rejected": extra["malformed"]}, result.describe()
    assert extra["attempts"] == {1: 400}, result.describe()  # the outage spent no retries
    assert result.failures == [], result.describe()
