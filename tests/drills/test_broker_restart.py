"""Given posts flowing through a Redis with AOF, when Redis is killed and started again, then the
worker and the producer reconnect by themselves and every post gets exactly one row."""

from __future__ import annotations

from tests.drills import broker


def test_broker_crash_and_restart_loses_nothing(drill) -> None:
    result = drill(broker.run, broker.BrokerSize(posts=300, send_s=8, first_at_s=2, restarts=1, down_s=2))
    extra = result.extra
    assert extra["alive"] and extra["reconnects"] >= 2, result.describe()
    assert not extra["errors"], result.describe()
    assert result.lost == 0 and result.duplicates == 0, result.describe()
    assert result.statuses.get("done") == 300, result.describe()
    assert result.failures == [], result.describe()
