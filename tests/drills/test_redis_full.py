"""A full Redis at a worker's start is an outage it waits out, then every post is answered."""

from __future__ import annotations

from testkit.drills import redis_full


def test_a_worker_starts_on_a_full_redis_waits_and_then_answers_every_post(drill) -> None:
    result = drill(redis_full.run, redis_full.RedisFullSize(posts=150, full_s=6))
    assert result.ok, result.describe()
    assert result.statuses == {"done": 150}
