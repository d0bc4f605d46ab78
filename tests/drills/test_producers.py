"""Given a worker, when real producers send posts with the options users set by habit, or a field fault
strikes the messages they sent, then every post is answered under its own id or refused with a dead letter:
never parked where no worker reads, never held so long that others wait, never done twice."""

from __future__ import annotations

from testkit.drills import producer_faults, producers
from testkit.missing_services import service_missing


def test_every_producer_and_option_is_answered_under_the_posts_own_id(drill) -> None:
    result = drill(producers.run, producers.ProducersSize(per_option=1, chunk_posts=3))
    assert result.lost == 0 and result.duplicates == 0, result.describe()
    assert result.extra["strays"] == {}, result.describe()  # nothing in `<queue>\x06\x16<n>`, `celery`, ...
    assert result.failures == [], result.describe()
    if result.extra["skipped"]:  # a producer that could not be installed: skip locally, fail in CI
        service_missing("a producer client", RuntimeError("; ".join(result.extra["skipped"])))


def test_far_eta_is_refused_without_blocking_the_fleet_and_short_delays_are_answered_on_time(drill) -> None:
    result = drill(producer_faults.delays, producer_faults.DelaySize(far=50, good=100, short=2, workers=2))
    extra = result.extra
    assert extra["good_in_time"] == 100, result.describe()
    assert extra["far_rejected"] == extra["far_dead"] == 50, result.describe()
    assert extra["short_done"] == 4 and extra["early"] == 0, result.describe()
    assert result.lost == 0 and result.failures == [], result.describe()


def test_posts_sharing_one_delivery_tag_survive_a_sigkill_while_held(drill) -> None:
    result = drill(producer_faults.shared_tag, producer_faults.HeldSize(posts=30))
    assert result.extra["rows_before_kill"] < 30, result.describe()  # the kill landed with posts held
    assert result.lost == 0 and result.statuses == {"done": 30}, result.describe()
    assert result.failures == [], result.describe()


def test_a_foreign_routing_key_or_exchange_survives_a_sigkill_while_held(drill) -> None:
    result = drill(producer_faults.foreign_route, producer_faults.HeldSize(posts=15))
    assert result.extra["rows_before_kill"] < 30, result.describe()
    assert result.lost == 0 and result.statuses == {"done": 30}, result.describe()
    assert result.extra["strays"] == {}, result.describe()  # nothing moved to `celery`
    assert result.failures == [], result.describe()


def test_a_chunk_longer_than_the_visibility_timeout_is_processed_once(drill) -> None:
    result = drill(producer_faults.big_chunk, producer_faults.ChunkSize(posts=200, max_chunk_posts=20))
    assert result.lost == 0 and result.statuses == {"done": 200}, result.describe()
    assert result.reprocessed == 0, result.describe()
    assert result.failures == [], result.describe()
