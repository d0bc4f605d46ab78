"""How much work waits on a queue, read from Redis: what an autoscaler and a person must see.

With late acknowledgement and prefetch the Redis list alone hides the backlog: a
worker takes up to `worker_prefetch_multiplier` messages into its buffer (celery-batches
waits for a batch to fill), and those are no longer on the list. They are in
kombu's `unacked` hash until their rows are committed, and between the take and
that record in topicq's in-flight list (worker/transport.py). So the depth is

    ready (the list) + in flight (`<queue>\\x06\\x16inflight`) + unacked (this queue's entries)

counted in one Lua script, so the three parts are read at one moment and no
message is counted twice or missed while it moves. The oldest message's age is
taken from the producer's send stamp (SENT_AT_HEADER) of the next message due
(the list's tail) and of every message workers hold; messages without a stamp
are left out of the age.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from worker.protocol import SENT_AT_HEADER
from worker.transport import inflight_key

log = logging.getLogger(__name__)

UNACKED_KEY = "unacked"  # kombu's default `unacked_key`, which topicq keeps

# KEYS: queue, in-flight list, unacked hash. ARGV: the suffix of this queue's unacked entries.
_BACKLOG = f"""
local oldest = nil
local function stamp(item)
  local found = string.match(item, '"{SENT_AT_HEADER}": ?([%d%.eE%+%-]+)')
  local value = found and tonumber(found)
  if value and (oldest == nil or value < oldest) then oldest = value end
end
local ready = redis.call('LLEN', KEYS[1])
local tail = redis.call('LINDEX', KEYS[1], -1)
if tail then stamp(tail) end
local inflight = redis.call('LRANGE', KEYS[2], 0, -1)
for _, item in ipairs(inflight) do stamp(item) end
local unacked, suffix = 0, ARGV[1]
for _, item in ipairs(redis.call('HVALS', KEYS[3])) do
  if string.sub(item, -#suffix) == suffix then
    unacked = unacked + 1
    stamp(item)
  end
end
if oldest then oldest = string.format('%.3f', oldest) else oldest = false end
return {{ready, #inflight, unacked, oldest}}
"""


@dataclass(frozen=True)
class Backlog:
    ready: int  # on the list, not yet taken
    in_flight: int  # taken, not yet recorded unacknowledged (a moment, or a crash)
    unacked: int  # in workers' buffers or being processed, or waiting for a retry countdown
    oldest_sent_at: float | None  # the producer's stamp of the oldest stamped message

    @property
    def depth(self) -> int:
        return self.ready + self.in_flight + self.unacked

    def oldest_age_s(self, now: float | None = None) -> float | None:
        """Seconds since the oldest stamped message was sent; 0 for an empty queue, None when unknown."""
        if self.depth == 0:
            return 0.0
        if self.oldest_sent_at is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.oldest_sent_at)


def read_backlog(client: Any, queue: str) -> Backlog:
    """The queue's backlog at one moment; Redis errors are the caller's to handle."""
    import json

    suffix = f", {json.dumps(queue)}]"  # kombu records [message, exchange, routing_key]
    ready, in_flight, unacked, oldest = client.eval(_BACKLOG, 3, queue, inflight_key(queue), UNACKED_KEY,
                                                    suffix)
    return Backlog(ready=int(ready), in_flight=int(in_flight), unacked=int(unacked),
                   oldest_sent_at=float(oldest) if oldest else None)


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
                                  "(held in workers' buffers); a backfill chunk is one message.",
                                  labels=["queue"])
        depth.add_metric([self.queue], backlog.depth)
        yield depth
        parts = GaugeMetricFamily("topicq_queue_messages", "The queue depth by where the messages are.",
                                  labels=["queue", "state"])
        for state, count in (("ready", backlog.ready), ("in_flight", backlog.in_flight),
                             ("unacked", backlog.unacked)):
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
