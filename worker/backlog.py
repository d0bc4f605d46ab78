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

import time
from dataclasses import dataclass
from typing import Any

from worker.protocol import SENT_AT_HEADER
from worker.transport import inflight_key

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
