"""A worker's presence: one Redis hash holds what it serves and its figures, and it goes when the worker does."""

from __future__ import annotations

import redis

from shared import redis_keys
from worker import presence as presence_module
from worker.presence import Presence, WorkerPresence, serving_workers, worker_figures


def test_one_hash_holds_what_a_worker_serves_and_its_figures(redis_url: str) -> None:
    presence = Presence(redis_url, "q", worker="h:1", node="topicq@h")
    presence.record(WorkerPresence(serving="topics:2", embedder="fake:bow:64"))
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.keys(f"{redis_keys.PRESENCE_PREFIX}*") == [b"topicq:worker:q:h:1"]
        assert 0 < client.ttl(presence.key) <= presence_module.TTL_S
        [listed] = serving_workers(redis_url)
        assert (listed.worker, listed.queue, listed.serving, listed.embedder) == ("h:1", "q", "topics:2",
                                                                                 "fake:bow:64")
        assert listed.describe() == "worker h:1 (queue 'q') serves topics:2"
        assert worker_figures(client, "q") == []  # none published: `topicq status` lists none
        assert (presence.serving, presence.embedder) == ("topics:2", "fake:bow:64")  # for the heartbeat

        figures = presence_module.FiguresPublisher(presence).figures(now=1000.0)
        presence.record_figures(figures)
        [seen] = worker_figures(client, "q", now=1000.0 + presence_module.FIGURES_TTL_S)
        assert (seen["worker"], seen["serving"], seen["embedder"], seen["at"]) == ("topicq@h", "topics:2",
                                                                                    "fake:bow:64", 1000.0)
        assert worker_figures(client, "other", now=1000.0) == []
        # A dead worker's figures are not shown once stale; what it served is listed until the hash expires.
        assert worker_figures(client, "q", now=1001.0 + presence_module.FIGURES_TTL_S) == []
        assert len(serving_workers(redis_url)) == 1
        assert presence_module.FIGURES_TTL_S < client.ttl(presence.key) <= presence_module.TTL_S

        presence.drop_figures()  # figures stop first; what it serves stays until the worker is gone
        assert worker_figures(client, "q") == [] and len(serving_workers(redis_url)) == 1
        presence.clear()
        assert serving_workers(redis_url) == [] and client.keys("topicq:*") == []
    finally:
        client.close()


def test_a_refusal_is_listed_with_its_reason_and_since_when(redis_url: str) -> None:
    presence = Presence(redis_url, "q", worker="h:1")
    presence.record(WorkerPresence(serving="topics:1", refused="topics:3", reason="needs embedder x",
                                   at="2025-01-01T00:00:00+00:00"))
    Presence(redis_url, "q", worker="h:2").record(WorkerPresence(serving="gq:1"))
    [refusing] = serving_workers(redis_url, model_name="topics")
    assert refusing.describe() == ("worker h:1 (queue 'q') serves topics:1 and refuses topics:3 since "
                                   "2025-01-01T00:00:00+00:00: needs embedder x")
    assert refusing.listed() == {"serving": "topics:1", "refused": "topics:3", "reason": "needs embedder x",
                                 "worker": "h:1", "queue": "q", "at": "2025-01-01T00:00:00+00:00"}


def test_without_redis_a_worker_serves_on_and_listings_are_empty() -> None:
    down = "redis://127.0.0.1:1/0"
    presence = Presence(down, "q", worker="h:1")
    presence.record(WorkerPresence(serving="topics:1", embedder="fake:bow:64"))
    assert presence.serving == "topics:1" and serving_workers(down) == []


def test_a_snapshot_reads_the_counters_without_running_the_scrape_time_collectors() -> None:
    """The figures are taken every few seconds: the drift gauges (database queries, scipy.stats) and the
    backlog gauges (Redis) are computed for a scrape, never for a snapshot."""
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector

    from worker import metrics

    class ScrapeOnly(Collector):
        calls = 0

        def collect(self):  # type: ignore[no-untyped-def]
            ScrapeOnly.calls += 1
            yield GaugeMetricFamily("topicq_test_scrape_only", "computed at a scrape")

    collector = ScrapeOnly()
    metrics.REGISTRY.register(collector)
    try:
        before = presence_module.snapshot().get("posts:done", 0.0)
        metrics.POSTS.labels(status="done", model_name="topics", model_version="1").inc(2)
        assert presence_module.snapshot()["posts:done"] == before + 2
        assert ScrapeOnly.calls == 0
    finally:
        metrics.REGISTRY.unregister(collector)
