"""Each worker's recent figures in Redis, for `topicq status`: no Prometheus needed to see them.

A thread of the worker (with metrics on) writes, every PUBLISH_S seconds, one
small key per worker, `topicq:live:<queue>:<worker>` with a TTL, holding its
counters since it started and their change over the last WINDOW_S seconds:
posts by outcome, posts and messages taken up, retries by reason, dead letters
and the end-to-end latency histogram. `topicq status` adds the workers up;
rates and percentiles come from the window, so one read is enough.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from shared import redis_keys
from worker import metrics

log = logging.getLogger(__name__)

KEY_PREFIX = redis_keys.LIVE_PREFIX
PUBLISH_S = 3.0
WINDOW_S = 30.0
TTL_S = 30  # a worker that stopped publishing drops out of the view after this


def snapshot() -> dict[str, Any]:
    """This process's counters now: flat name -> value, histogram buckets as `le:<bound>`."""
    figures: dict[str, float] = {}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "topicq_posts_total":
                key = f"posts:{labels['status']}"
            elif sample.name == "topicq_retries_total":
                key = f"retries:{labels['reason']}"
            elif sample.name == "topicq_end_to_end_seconds_bucket":
                key = f"le:{labels['le']}"
            elif sample.name in ("topicq_end_to_end_seconds_count", "topicq_end_to_end_seconds_sum",
                                 "topicq_posts_received_total", "topicq_messages_received_total",
                                 "topicq_dead_letters_total", "topicq_end_to_end_unstamped_total"):
                key = sample.name
            else:
                continue
            figures[key] = figures.get(key, 0.0) + sample.value
    return figures


def _difference(now: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in now.items() if v - before.get(k, 0.0)}


class Publisher:
    """Writes this worker's figures to Redis every PUBLISH_S seconds from a daemon thread (a slow Redis
    delays a figure, never a batch or the consumer loop)."""

    def __init__(self, redis_url: str, queue: str, worker: str, about: Callable[[], dict[str, Any]]) -> None:
        self.redis_url, self.queue, self.worker, self.about = redis_url, queue, worker, about
        # The counters when the worker started: the first window reaches back to them.
        self.history: deque[tuple[float, dict[str, float]]] = deque([(time.time(), snapshot())])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-stats", daemon=True)
        self._client: Any = None

    @property
    def key(self) -> str:
        return f"{KEY_PREFIX}{self.queue}:{self.worker}"

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            if self._client is not None:
                self._client.delete(self.key)
        except Exception:  # noqa: BLE001 - the TTL ends it anyway
            pass

    def record(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        figures = snapshot()
        self.history.append((now, figures))
        while len(self.history) > 1 and now - self.history[1][0] >= WINDOW_S:
            self.history.popleft()
        since, before = self.history[0]
        return {"worker": self.worker, "queue": self.queue, "at": now, **self.about(),
                "totals": figures, "window_s": now - since, "window": _difference(figures, before)}

    def _run(self) -> None:
        import redis

        self._client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1, socket_timeout=2)
        while not self._stop.wait(PUBLISH_S):
            record = self.record()
            try:
                self._client.set(self.key, json.dumps(record), ex=TTL_S)
            except Exception as exc:  # noqa: BLE001 - figures are best effort
                log.debug("cannot publish live figures: %s", exc)


def read_live(client: Any, queue: str | None = None) -> list[dict[str, Any]]:
    """The figures every worker published in the last TTL_S seconds (of one queue, or all)."""
    keys = sorted(client.scan_iter(match=f"{KEY_PREFIX}{queue + ':' if queue else ''}*", count=1000))
    return [json.loads(raw) for raw in (client.mget(keys) if keys else []) if raw]
