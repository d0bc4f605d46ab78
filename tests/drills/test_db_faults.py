"""Given posts flowing, when the database refuses writes (read-only, a table renamed away), is down
when a worker starts, or holds dead letters' rejections, then nothing is lost and health says why;
and `topicq dead-letters resend` ends while workers run."""

from __future__ import annotations

from testkit.drills import dbfaults


def test_a_read_only_database_loses_nothing_and_health_fails_with_the_reason(drill) -> None:
    result = drill(dbfaults.run_read_only, dbfaults.FaultSize(posts=300, fault_s=10))
    assert result.lost == 0 and result.duplicates == 0, result.describe()
    assert result.statuses == {"done": 300} and result.extra["attempts"] == {1: 300}, result.describe()
    assert result.extra["health_failed"] > 0, result.describe()
    assert result.failures == [], result.describe()


def test_the_results_table_renamed_away_and_back_loses_nothing(drill) -> None:
    result = drill(dbfaults.run_renamed, dbfaults.FaultSize(posts=200, fault_s=8))
    assert result.lost == 0 and result.duplicates == 0, result.describe()
    assert result.statuses == {"done": 200}, result.describe()
    assert result.failures == [], result.describe()


def test_a_worker_started_during_an_outage_waits_and_dead_letters_get_their_rows(drill) -> None:
    result = drill(dbfaults.run_down_at_start, dbfaults.StartSize())
    assert result.extra["alive_while_down"] and not result.extra["start_errors"], result.describe()
    assert result.extra["unknown_rejected"] == 5 and result.extra["pending_during"] > 0, result.describe()
    assert result.lost == 0 and result.duplicates == 0, result.describe()
    assert result.failures == [], result.describe()


def test_dead_letters_resend_ends_with_workers_running(drill) -> None:
    result = drill(dbfaults.run_resend, dbfaults.ResendSize(entries=200))
    first, plain, forced = result.extra["moved"]
    assert first is not None and first <= 200, result.describe()
    assert plain == 0 and forced is not None and forced <= 200, result.describe()
    assert result.failures == [] and result.lost == 0, result.describe()
