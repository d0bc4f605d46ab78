"""`topicq status`'s figures from the workers' published windows: sums, rates and percentiles."""

from __future__ import annotations

import math

import pytest

from cli.status_view import build_view, quantile, render
from shared.wire.backlog import Backlog


def test_quantile_interpolates_within_the_bucket_like_prometheus() -> None:
    # 10 posts: 2 under 0.5 s, 6 more under 1 s, 2 more under 2 s.
    buckets = {0.5: 2, 1.0: 8, 2.0: 10, math.inf: 10}
    assert quantile(0.5, buckets) == pytest.approx(0.5 + 0.5 * (5 - 2) / 6)
    assert quantile(0.95, buckets) == pytest.approx(1.0 + 1.0 * (9.5 - 8) / 2)
    assert quantile(0.5, {0.5: 0, math.inf: 0}) is None
    assert quantile(0.99, {1.0: 0, math.inf: 4}) == 1.0  # beyond the largest bound: that bound


def record(worker: str, window: dict[str, float], totals: dict[str, float], seconds: float = 10.0) -> dict:
    return {"worker": worker, "queue": "q", "at": 1000.0, "serving": "topics:2", "embedder": "fake",
            "window_s": seconds, "window": window, "totals": totals}


def test_two_workers_add_up_and_the_rate_in_follows_the_backlog() -> None:
    live = [
        record("a", {"posts:done": 50, "posts:retried": 5, "retries:rate_limited": 5, "le:1.0": 40,
                     "le:+Inf": 50, "topicq_end_to_end_seconds_count": 50, "topicq_posts_received_total": 55,
                     "topicq_messages_received_total": 55}, {"posts:done": 500}),
        record("b", {"posts:done": 30, "posts:rejected": 2, "le:1.0": 30, "le:+Inf": 32,
                     "topicq_end_to_end_seconds_count": 32, "topicq_posts_received_total": 32,
                     "topicq_messages_received_total": 32}, {"posts:done": 300, "posts:rejected": 2}),
    ]
    before = build_view("q", Backlog(ready=100, in_flight=0, unacked=10, oldest_sent_at=990.0), live, now=1000.0)
    view = build_view("q", Backlog(ready=140, in_flight=0, unacked=10, oldest_sent_at=990.0), live, now=1002.0,
                      previous=before)
    rates = view["posts_per_s"]
    assert rates["done"] == 8.0 and rates["rejected"] == 0.2 and rates["retried"] == 0.5
    assert rates["out"] == 8.2 and rates["taken"] == 8.7
    assert rates["in"] == pytest.approx(8.7 + 40 / 2)  # 40 more messages in 2 s, one post each
    assert before["posts_per_s"]["in"] is None  # one view: no growth to measure yet
    assert view["backlog"] == {"depth": 150, "ready": 140, "in_flight": 0, "held_by_workers": 10,
                               "delayed": 0, "oldest_age_s": 12.0}
    assert view["errors"] == {"retry: rate_limited": 5, "rejected": 2}
    assert view["totals"]["done"] == 800 and view["latency_s"]["posts"] == 82
    assert 0 < view["latency_s"]["p50"] <= 1.0 and view["latency_s"]["p95"] == 1.0  # 12 posts beyond 1 s
    assert [w["worker"] for w in view["workers"]] == ["a", "b"]
    text = render(view)
    assert "150 messages" in text and "held by workers" in text and "topics:2" in text


def test_no_workers_and_no_redis_are_said_plainly() -> None:
    text = render(build_view("q", None, [], now=0.0))
    assert "Redis unreachable" in text and "none publishing figures" in text
