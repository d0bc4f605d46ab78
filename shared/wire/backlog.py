"""How much work waits on a queue, read from Redis: what an autoscaler and a person must see.

With late acknowledgement and prefetch the Redis list alone hides the backlog: a
worker takes up to `worker_prefetch_multiplier` messages into its buffer (celery-batches
waits for a batch to fill), and those are no longer on the list. They are in
kombu's `unacked` hash until their rows are committed, and between the take and
that record in topicq's in-flight list (shared/wire/transport.py). So the depth is

    ready      the queue's list and kombu's priority sub-lists `<queue>\\x06\\x16<n>`, n = 1..9
               (a stock Celery producer sending with priority=5 pushes onto `<queue>\\x06\\x163`)
    in flight  `<queue>\\x06\\x16inflight`: taken, not yet recorded unacknowledged
    unacked    kombu's `unacked` hash: held in workers' buffers, processing, or a retry countdown
    delayed    `<queue>\\x06\\x16delayed`, a sorted set: parked until their due time

A scrape costs Redis counts, never copies: LLEN, HLEN and ZCARD in one MULTI, so the
parts are read at one moment and no message is counted twice or missed while it moves.
The `unacked` hash is shared by every queue of the Redis db and only a message's body
says which queue it belongs to, so its HLEN is counted whole: exact with one topicq
queue per Redis db (the deployment topicq documents); with several, each queue's depth
also counts the others' held messages (an over-count, which scales up, never down).

The oldest message's age is the producer's send stamp (headers.SENT_AT_HEADER of the
decoded message, judged like the transport does: shared/wire/envelope.py) of at most one
message per place: the next due of each non-empty list (its tail), the in-flight list's
oldest and the longest-held unacked entry (kombu's `unacked_index`) when it is this
queue's. Unstamped messages and delayed ones (they wait by design) are left out of it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.redis_keys import UNACKED, UNACKED_INDEX, delayed_key, inflight_key, ready_keys
from shared.wire.envelope import valid_stamp
from shared.wire.protocol import SENT_AT_HEADER

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Backlog:
    ready: int  # on the queue's lists, not yet taken
    in_flight: int  # taken, not yet recorded unacknowledged (a moment, or a crash)
    unacked: int  # in workers' buffers or being processed, or waiting for a retry countdown
    oldest_sent_at: float | None  # the producer's stamp of the oldest stamped message
    delayed: int = 0  # parked until their due time

    @property
    def depth(self) -> int:
        return self.ready + self.in_flight + self.unacked + self.delayed

    def oldest_age_s(self, now: float | None = None) -> float | None:
        """Seconds since the oldest stamped message was sent; 0 when nothing waits but delayed messages
        (they wait by design), None when unknown."""
        if self.depth - self.delayed == 0:
            return 0.0
        if self.oldest_sent_at is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.oldest_sent_at)


def read_backlog(client: Any, queue: str) -> Backlog:
    """The queue's backlog at one moment; Redis errors are the caller's to handle."""
    lists = ready_keys(queue) + [inflight_key(queue)]
    with client.pipeline(transaction=True) as pipe:  # the counts: one moment, O(1) each
        for key in lists:
            pipe.llen(key)
        pipe.hlen(UNACKED).zcard(delayed_key(queue)).zrange(UNACKED_INDEX, 0, 0)
        *lengths, unacked, delayed, longest_held = pipe.execute()
    oldest = _oldest_stamp(client, queue, [key for key, n in zip(lists, lengths, strict=True) if n],
                           longest_held[0] if longest_held else None)
    return Backlog(ready=sum(lengths[:-1]), in_flight=lengths[-1], unacked=int(unacked),
                   delayed=int(delayed), oldest_sent_at=oldest)


def _oldest_stamp(client: Any, queue: str, nonempty: list[str], held_tag: bytes | None) -> float | None:
    """The earliest send stamp among each non-empty list's oldest entry and the longest-held one."""
    with client.pipeline(transaction=False) as pipe:
        for key in nonempty:
            pipe.lindex(key, -1)  # producers LPUSH, workers take from the right: the tail is oldest
        if held_tag is not None:
            pipe.hget(UNACKED, held_tag)
        replies = pipe.execute() if len(pipe) else []
    now = time.time()
    stamps = [_stamp(raw, now) for raw in replies[:len(nonempty)]]
    if held_tag is not None:
        stamps.append(_held_stamp(replies[-1], queue, now))
    found = [stamp for stamp in stamps if stamp is not None]
    return min(found) if found else None


def _stamp(raw: bytes | None, now: float, message: Any = None) -> float | None:
    """headers.SENT_AT_HEADER of a message, when it is a plausible send stamp."""
    if message is None:
        if raw is None:
            return None
        try:
            message = json.loads(raw)
        except ValueError:
            return None
    headers = message.get("headers") if isinstance(message, dict) else None
    value = headers.get(SENT_AT_HEADER) if isinstance(headers, dict) else None
    return float(value) if value is not None and valid_stamp(value, now=now) else None


def _held_stamp(raw: bytes | None, queue: str, now: float) -> float | None:
    """The stamp of an unacked record of this queue."""
    message = held_message(raw, queue)
    return None if message is None else _stamp(None, now, message=message)


def held_message(raw: bytes | str | None, queue: str) -> Any:
    """The message of an unacked record, kombu's [message, exchange, routing_key], when it is this
    queue's (the hash is shared by every queue of the db); else None."""
    try:
        record = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    if not (isinstance(record, list) and len(record) == 3 and record[2] == queue):
        return None
    return record[0]


class BacklogCollector(Collector):
    """topicq_queue_depth and topicq_oldest_message_age_seconds, read from Redis at each scrape.

    Every worker of a queue reports the same figures: aggregate with max(), not sum()."""

    def __init__(self, redis_url: str, queue: str) -> None:
        self.redis_url, self.queue = redis_url, queue
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1, socket_timeout=2)
        return self._client

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("topicq_redis_up", "1 when the last scrape could read the queue from Redis.",
                               labels=["queue"])
        try:
            backlog = read_backlog(self._redis(), self.queue)
        except Exception as exc:  # noqa: BLE001 - a scrape reports Redis down, it does not fail
            log.debug("cannot read the backlog of %r: %s", self.queue, exc)
            up.add_metric([self.queue], 0)
            yield up
            return
        up.add_metric([self.queue], 1)
        yield up
        depth = GaugeMetricFamily("topicq_queue_depth", "Messages waiting: ready + in flight + unacked "
                                  "(held in workers' buffers) + delayed; a backfill chunk is one message.",
                                  labels=["queue"])
        depth.add_metric([self.queue], backlog.depth)
        yield depth
        parts = GaugeMetricFamily("topicq_queue_messages", "The queue depth by where the messages are.",
                                  labels=["queue", "state"])
        for state, count in (("ready", backlog.ready), ("in_flight", backlog.in_flight),
                             ("unacked", backlog.unacked), ("delayed", backlog.delayed)):
            parts.add_metric([self.queue, state], count)
        yield parts
        age = backlog.oldest_age_s()
        if age is not None:
            oldest = GaugeMetricFamily("topicq_oldest_message_age_seconds",
                                       "Seconds since the producer sent the oldest waiting stamped message.",
                                       labels=["queue"])
            oldest.add_metric([self.queue], age)
            yield oldest

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []
