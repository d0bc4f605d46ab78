"""What each worker is and serves, in one Redis hash per worker: the one place a worker records it.

    key   topicq:worker:<queue>:<host:pid>   (shared/redis_keys.py)
    worker, queue, node    who: host:pid, the queue it takes from, Celery's node name
    serving, embedder      NAME:VERSION and the embedder id it serves them with, after each look
                           at the alias (every MODEL_REFRESH_S, idle or not)
    refused, reason, at    the NAME:VERSION the alias names that it cannot serve, why, and since
                           when (without a refusal, `at` is when it last looked)
    figures                with metrics on, every PUBLISH_S: its counters since it started and
                           their change over the last WINDOW_S (JSON)

`topicq models` and `stats` list what workers serve (a promotion they cannot
follow shows up there, not only in a log), backfill and retry-failed check what
a queue's workers serve, and `topicq status` adds the workers' figures up. The
same record names the served pair in the heartbeat file (worker/heartbeat.py)
and in topicq_model_info.

A worker that stops deletes its hash; one that dies drops out by itself: the
hash expires TTL_S after the last write, and readers skip figures older than
FIGURES_TTL_S. Redis is best effort here: a hiccup costs a log line, never a batch.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from shared import redis_keys
from worker import metrics

log = logging.getLogger(__name__)

TTL_S = 600  # rewritten at every look at the alias; a dead worker vanishes after this
FIGURES_TTL_S = 30  # rewritten every PUBLISH_S: older figures are a dead worker's, and not shown
PUBLISH_S = 3.0
WINDOW_S = 30.0
TIMEOUT_S = 1.0  # presence is worth a second, never a hung command or worker
LOOK_FIELDS = ("serving", "embedder", "refused", "reason", "at")


@dataclass(frozen=True)
class WorkerPresence:
    """What one worker serves and refuses; `worker`, `queue` and `node` are stamped when recorded."""

    serving: str | None  # NAME:VERSION, None before the first model loads
    refused: str | None = None  # NAME:VERSION the alias points to that this worker cannot serve
    reason: str | None = None
    worker: str = ""
    queue: str = ""
    at: str = ""
    embedder: str | None = None
    node: str = ""

    def describe(self) -> str:
        line = f"worker {self.worker} (queue {self.queue!r}) serves {self.serving or 'nothing'}"
        if self.refused:
            line += f" and refuses {self.refused} since {self.at}: {self.reason}"
        return line

    def listed(self) -> dict[str, Any]:
        """The fields `topicq stats --format json` lists for a worker."""
        return {key: value for key, value in asdict(self).items() if key not in ("embedder", "node")}


def _client(redis_url: str) -> Any:
    import redis

    return redis.Redis.from_url(redis_url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S,
                                decode_responses=True)


class Presence:
    """This worker's hash: what it serves after each look, and its figures; kept in memory for the
    heartbeat too."""

    def __init__(self, redis_url: str, queue: str, *, worker: str | None = None, node: str = "") -> None:
        self.redis_url, self.queue, self.node = redis_url, queue, node
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.key = redis_keys.presence_key(queue, self.worker)
        self.serving: str | None = None  # what the heartbeat names: what Redis and the metrics name
        self.embedder: str | None = None

    def record(self, look: WorkerPresence) -> None:
        """After each look at the alias: what is served (and refused) now."""
        at = look.at or datetime.now(UTC).isoformat(timespec="seconds")
        self._write({"serving": look.serving or "", "embedder": look.embedder or "",
                     "refused": look.refused or "", "reason": look.reason or "", "at": at})
        name, _, version = (look.serving or "").rpartition(":")
        if version.isdigit() and look.embedder:
            metrics.serving(name, int(version), look.embedder)
        self.serving, self.embedder = look.serving, look.embedder  # last: the others name it already

    def record_figures(self, figures: dict[str, Any]) -> None:
        self._write({"figures": json.dumps(figures)})

    def drop_figures(self) -> None:
        self._command(lambda client: client.hdel(self.key, "figures"), "drop the worker's figures")

    def clear(self) -> None:
        """Drop this worker's hash when it stops, so listings show only running workers."""
        self._command(lambda client: client.delete(self.key), "clear the worker's presence")

    def _write(self, fields: dict[str, str]) -> None:
        who = {"worker": self.worker, "queue": self.queue, "node": self.node}

        def write(client: Any) -> None:
            with client.pipeline(transaction=True) as pipe:
                pipe.hset(self.key, mapping={**who, **fields}).expire(self.key, TTL_S).execute()

        self._command(write, "record the worker's presence")

    def _command(self, command: Any, what: str) -> None:
        try:
            client = _client(self.redis_url)
            try:
                command(client)
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - presence is best effort; the TTL ends a stale one
            log.debug("cannot %s in Redis: %s", what, exc)


# The samples a snapshot reads. Only the collectors that export them run: the drift and backlog
# gauges (database queries, scipy.stats, Redis) are computed for a scrape, not every PUBLISH_S.
_TOTALS = ("topicq_end_to_end_seconds_count", "topicq_end_to_end_seconds_sum", "topicq_posts_received_total",
           "topicq_messages_received_total", "topicq_dead_letters_total", "topicq_end_to_end_unstamped_total")
_SNAPSHOT_SAMPLES = ("topicq_posts_total", "topicq_retries_total", "topicq_end_to_end_seconds_bucket",
                     *_TOTALS)


def snapshot() -> dict[str, float]:
    """This process's counters now: flat name -> value, histogram buckets as `le:<bound>`."""
    figures: dict[str, float] = {}
    for family in metrics.REGISTRY.restricted_registry(_SNAPSHOT_SAMPLES).collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "topicq_posts_total":
                key = f"posts:{labels['status']}"
            elif sample.name == "topicq_retries_total":
                key = f"retries:{labels['reason']}"
            elif sample.name == "topicq_end_to_end_seconds_bucket":
                key = f"le:{labels['le']}"
            elif sample.name in _TOTALS:
                key = sample.name
            else:
                continue
            figures[key] = figures.get(key, 0.0) + sample.value
    return figures


def _difference(now: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in now.items() if v - before.get(k, 0.0)}


class FiguresPublisher:
    """Records this worker's figures every PUBLISH_S from a daemon thread (a slow Redis delays a
    figure, never a batch or the consumer loop)."""

    def __init__(self, presence: Presence) -> None:
        self.presence = presence
        # The counters when the worker started: the first window reaches back to them.
        self.history: deque[tuple[float, dict[str, float]]] = deque([(time.time(), snapshot())])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="topicq-figures", daemon=True)

    def start(self) -> FiguresPublisher:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """No figures after this returns: the hash keeps what the worker serves until it is cleared."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.presence.drop_figures()

    def figures(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        totals = snapshot()
        self.history.append((now, totals))
        while len(self.history) > 1 and now - self.history[1][0] >= WINDOW_S:
            self.history.popleft()
        since, before = self.history[0]
        return {"at": now, "totals": totals, "window_s": now - since, "window": _difference(totals, before)}

    def _run(self) -> None:
        while not self._stop.wait(PUBLISH_S):
            self.presence.record_figures(self.figures())


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _read(client: Any, queue: str | None) -> list[dict[str, str]]:
    """Every worker's hash (of one queue, or all), read with the caller's client: text either way."""
    keys = sorted(client.scan_iter(match=f"{redis_keys.PRESENCE_PREFIX}{queue + ':' if queue else ''}*",
                                   count=1000))
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
        hashes = pipe.execute() if keys else []
    return [{_text(k): _text(v) for k, v in fields.items()} for fields in hashes if fields]


def serving_workers(redis_url: str, *, model_name: str | None = None) -> list[WorkerPresence]:
    """What the running workers serve, of one model's workers or all; [] when Redis is down."""
    try:
        client = _client(redis_url)
        try:
            hashes = _read(client, None)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - listing models must work without Redis
        log.debug("cannot read the workers' presence from Redis: %s", exc)
        return []
    found = [WorkerPresence(worker=h.get("worker", ""), queue=h.get("queue", ""), node=h.get("node", ""),
                            **{field: h[field] or None for field in LOOK_FIELDS if field != "at"},
                            at=h["at"]) for h in hashes if "at" in h]
    return [w for w in found
            if model_name is None or (w.serving or w.refused or "").partition(":")[0] == model_name]


def worker_figures(client: Any, queue: str | None = None, now: float | None = None) -> list[dict[str, Any]]:
    """The recent figures of every worker that publishes them (of one queue, or all), each with who it
    is and what it serves, for `topicq status`. Figures older than FIGURES_TTL_S are a dead worker's."""
    now = time.time() if now is None else now
    found = [{"worker": fields.get("node") or fields.get("worker"), "queue": fields.get("queue"),
              "serving": fields.get("serving") or None, "embedder": fields.get("embedder") or None,
              **json.loads(fields["figures"])} for fields in _read(client, queue) if "figures" in fields]
    return [figures for figures in found if now - float(figures.get("at", 0)) <= FIGURES_TTL_S]
