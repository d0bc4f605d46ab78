"""kombu's Redis transport without its crash window between pop and unacked record.

kombu takes a message with BRPOP and then, in a second command, records it as
unacknowledged. A broker that dies between the two (with the BRPOP already in
its append-only file) loses the message: it is neither queued nor unacked.

Here the pop is `BLMOVE queue -> queue<sep>inflight`, atomic and persisted
like any write, and the unacked record removes the message from the in-flight
list in the same MULTI. A message is therefore always in the queue, in the
in-flight list or in the unacked hash. A message left in the in-flight list
(its consumer or the broker died in between) goes back to the queue once it
has sat there longer than the visibility timeout, like an unacked one.

The BLMOVE goes with a script, in the same round trip, that moves what else
waits (up to the consumer's prefetch credit, TAKE_MAX at most) the same way;
all the messages of one round trip are recorded unacked in one MULTI before
Celery sees any of them. After a round trip that drained the queue, the
consumer waits `take_pause_s` before the next, so that messages arriving one
by one are taken several at a time (a few ms of latency, against a batch
that waits BATCH_WAIT_S anyway).

BLMOVE waits on one key only, so this path serves a channel consuming one
queue with one priority step (`priority_steps=[0]`, topicq's setting); any
other channel falls back to kombu's BRPOP.

With the transport option `accepted_tasks` (topicq's Celery config sets it),
every message on the queues named by `checked_queues` (all when None) is
checked before kombu and Celery see it (shared/wire/envelope.py): one that is not a
well-formed message for those tasks, or that Celery fails to take, is moved to
the dead-letter list in the same MULTI that takes it out of flight
(shared/wire/dead_letters.py), so one bad message can neither stop the worker nor
come back.

What a producer chose cannot reach the worker's bookkeeping: a checked message
gets a delivery tag of its own (two messages sharing one would share one
unacked record), is recorded as coming from the queue it was taken from
(kombu restores an unacked message by its exchange and routing key, which may
name no queue), and loses `expires` (Celery would discard it unanswered). A
message due later (`eta`, `countdown`, DUE_HEADER) is not handed to Celery,
which would hold it in a prefetch slot until due: it is parked in the sorted
set `<queue><sep>delayed` and put back on the queue when due; one due more than
`max_delay_s` ahead is a dead letter. The sweep also moves messages a stock
Celery producer put on kombu's priority lists (`<queue><sep><n>`, for
`priority=n`) onto the queue, where workers read.

    app.conf.broker_transport = "shared.wire.transport:Transport"
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual.base import Message as VirtualMessage
from kombu.utils.encoding import bytes_to_str
from kombu.utils.imports import symbol_by_name
from kombu.utils.json import loads
from redis.exceptions import OutOfMemoryError, ResponseError

from shared.redis_keys import delayed_key, inflight_key, priority_keys
from shared.wire import dead_letters
from shared.wire.envelope import PoisonMessage, inspect
from shared.wire.protocol import DUE_HEADER

log = logging.getLogger(__name__)

# A message due within this many seconds is handed to Celery rather than parked.
PARK_AFTER_S = 1.0
# Entries moved per key and sweep: one sweep never holds Redis for long.
SWEEP_LIMIT = 5000
# Messages taken in one round trip at most (a BLMOVE and a script taking what else waits).
TAKE_MAX = 100

# KEYS: the queue, its in-flight list. ARGV: how many at most. Moves what waits (oldest first) to
# the in-flight list and returns it: taken atomically with its in-flight record, like a BLMOVE.
_TAKE_MORE = """
local taken = {}
for i = 1, tonumber(ARGV[1]) do
  local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not item then break end
  taken[i] = item
end
return taken
"""

# KEYS: in-flight list, its sightings hash, the queue, the delayed set, then the priority lists.
# ARGV: now, visibility timeout, limit.
# A message is put back once first seen in the in-flight list more than the timeout ago; delayed
# messages that are due go to the head of the queue (taken next); priority lists' messages to its tail.
_SWEEP = """
local now, timeout, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local due = redis.call('ZRANGE', KEYS[4], '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
for _, item in ipairs(due) do
  redis.call('RPUSH', KEYS[3], item)
  redis.call('ZREM', KEYS[4], item)
end
for i = 5, #KEYS do
  local moved = 0
  while moved < limit and redis.call('LMOVE', KEYS[i], KEYS[3], 'RIGHT', 'LEFT') do
    moved = moved + 1
  end
end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local present, restored = {}, 0
for _, item in ipairs(items) do
  local digest = redis.sha1hex(item)
  local seen = tonumber(redis.call('HGET', KEYS[2], digest))
  if not seen then
    redis.call('HSET', KEYS[2], digest, now)
    present[digest] = true
  elseif now - seen > timeout then
    redis.call('LREM', KEYS[1], 1, item)
    redis.call('RPUSH', KEYS[3], item)
    redis.call('HDEL', KEYS[2], digest)
    restored = restored + 1
  else
    present[digest] = true
  end
end
for _, digest in ipairs(redis.call('HKEYS', KEYS[2])) do
  if not present[digest] then redis.call('HDEL', KEYS[2], digest) end
end
return restored
"""


class RedisFull:
    """A full Redis (maxmemory, noeviction), said once per episode; the consumer waits a growing
    while before each reconnect instead of spinning (Celery reconnects at once)."""

    def __init__(self) -> None:
        self.streak = 0

    def seen(self) -> None:
        if self.streak == 0:
            log.error("Redis is full (maxmemory with noeviction): no message can be taken without its "
                      "in-flight record, so this worker waits and retries; nothing is lost. Free memory "
                      "(raise maxmemory, purge dead letters) to resume.")
        self.streak += 1

    def wait(self) -> None:
        self.seen()
        time.sleep(min(0.5 * 2 ** min(self.streak, 5), 10.0))

    def over(self) -> None:
        if self.streak:
            log.warning("Redis takes writes again: taking messages")
        self.streak = 0


redis_full = RedisFull()

# A message taken and checked, to deliver: as taken (its in-flight entry), decoded, its post ids.
_Taken = tuple[bytes, dict[str, Any], list[str]]


class Message(VirtualMessage):
    """kombu's message, given the body the envelope check decoded (the same JSON, checked for the same
    content type and encoding kombu accepts): Celery reads it without a second decode."""

    def __init__(self, payload: dict[str, Any], channel: Any = None, **kwargs: Any) -> None:
        super().__init__(payload, channel=channel, **kwargs)
        body = getattr(channel, "decoded_bodies", {}).pop(self.delivery_tag, None)
        if body is not None:
            self._decoded_cache = body


# KEYS: the dead-letter list. ARGV: its byte bound. Drops the oldest entries while Redis's estimate
# of the list's memory (sampled: O(1), not a scan of the entries) is above the bound; the newest stays.
_TRIM_BYTES = """
local limit, dropped = tonumber(ARGV[1]), 0
while dropped < 1000 and redis.call('LLEN', KEYS[1]) > 1
      and redis.call('MEMORY', 'USAGE', KEYS[1], 'SAMPLES', 5) > limit do
  redis.call('RPOP', KEYS[1])
  dropped = dropped + 1
end
return dropped
"""




class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Tags whose unacked record `ack_many` removed, awaiting their message's own ack.
        self._removed: set[str] = set()

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.channel.recorded:  # recorded when taken (Channel._record_held)
            self.channel.recorded.discard(delivery_tag)
            kombu_redis.virtual.QoS.append(self, message, delivery_tag)
            return
        super().append(message, delivery_tag)

    def ack_many(self, tags: list[str]) -> None:
        """Remove the unacked records of `tags` in one MULTI (a batch's messages, once its rows are
        written). Each message's own ack then only forgets it locally: see `ack`."""
        if not tags:
            return
        with self.channel.conn_or_acquire() as client, client.pipeline() as pipe:
            pipe.zrem(self.unacked_index_key, *tags).hdel(self.unacked_key, *tags).execute()
        self._removed.update(tags)

    def ack(self, delivery_tag: str) -> None:
        if delivery_tag in self._removed:
            self._removed.discard(delivery_tag)
            kombu_redis.virtual.QoS.ack(self, delivery_tag)
            return
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self._removed.discard(delivery_tag)
        super().reject(delivery_tag, requeue=requeue)

    def restore_unacked(self, client: Any = None) -> None:
        """At shutdown kombu puts back what this consumer holds; with the broker gone (a SIGTERM during a
        reconnect) that cannot be done, and need not be: the unacked records bring them back after the
        visibility timeout. Said once, never a crash at exit."""
        try:
            if self.channel.connection is None:  # closed during a reconnect: no client can be made
                raise ConnectionError("the broker connection is closed")
            super().restore_unacked(client)
        except (*_OUTAGE_ERRORS, ConnectionError) as exc:
            held: dict[str, Any] = self._delivered or {}
            log.warning("could not put back %d held message(s) at shutdown (%s); Redis returns them after "
                        "VISIBILITY_TIMEOUT_S", len(held), exc)
            held.clear()

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        try:
            self.renew_held()
            super().restore_visible(start=start, num=num, interval=interval)
            self.channel.restore_inflight()
        except OutOfMemoryError:  # its lock and moves are writes; the next sweep tries again
            redis_full.seen()

    def renew_held(self) -> None:
        """Re-stamp the messages this consumer holds, so the visibility timeout counts from its last
        sign of life rather than from the delivery: a message waiting its turn in a live worker (a
        prefetched chunk, a full buffer) is never given to a second worker. A dead worker's messages
        stop being renewed and come back after the timeout. XX: an acknowledged one is not re-added."""
        tags: list[str] = list(self._delivered or ())
        if tags:
            with self.channel.conn_or_acquire() as client:
                client.zadd(self.unacked_index_key, dict.fromkeys(tags, time.time()), xx=True)


class Channel(kombu_redis.Channel):
    QoS = QoS
    Message = Message
    _shared_client: Any = None  # class defaults: kombu's __init__ may talk to Redis before ours runs
    _moving_from: str | None = None
    _taking_more = 0  # messages the script sent after the BLMOVE may take; its reply is pending

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Delivery tags recorded unacked when taken, not yet handed to kombu's QoS.
        self.recorded: set[str] = set()
        # Delivery tag -> body decoded by the envelope check, until kombu builds its message.
        self.decoded_bodies: dict[str, Any] = {}
        # Delivery tags of our own: unique (a random prefix per channel), without a system call each.
        self._tag_prefix, self._tag_count = uuid.uuid4().hex, itertools.count()

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """kombu builds a new client object (about 0.1 ms of CPU) for every ack; one per pool will do:
        a client takes a connection from its pool for each command, so threads can share it."""
        if client:
            yield client
            return
        if self._shared_client is None or self._shared_client.connection_pool is not self.pool:
            self._shared_client = self._create_client()
        yield self._shared_client

    def _queue_bind(self, *args: Any) -> None:
        try:
            super()._queue_bind(*args)
        except OutOfMemoryError:  # a write a consumer can do without: producers' sends bind it too
            redis_full.seen()

    def _size(self, queue: str) -> int:
        """kombu's count in a MULTI, which a full Redis refuses even for reads: plain LLENs instead."""
        with self.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            for priority in self.priority_steps:
                pipe.llen(self._q_for_pri(queue, priority))
            return sum(size for size in pipe.execute() if isinstance(size, int))

    def _single_key(self) -> str | None:
        """The one key to wait on, or None when kombu's multi-key BRPOP is needed."""
        queues = self.active_queues
        if len(queues) != 1 or list(self.priority_steps) != [0] or self.global_keyprefix:
            return None
        return str(queues[0])

    def _brpop_start(self, timeout: int | None = None) -> None:
        queue = self._single_key()
        self._moving_from = queue
        if queue is None:
            super()._brpop_start(timeout)
            return
        self._in_poll = self.client.connection
        self._brpop_sent_at = kombu_redis.monotonic()  # type: ignore[assignment]
        wait = self.brpop_timeout if timeout is None else timeout
        inflight = inflight_key(queue, self.sep)
        # Wait for one message, then take what else waits (up to the prefetch credit) in the same
        # round trip: Redis runs the script as soon as the BLMOVE returns.
        credit = self.qos.can_consume_max_estimate()
        self._taking_more = max(0, min(TAKE_MAX, TAKE_MAX if credit is None else credit) - 1)
        commands: list[tuple[Any, ...]] = [("BLMOVE", queue, inflight, "RIGHT", "LEFT", wait or 0)]
        if self._taking_more:
            commands.append(("EVAL", _TAKE_MORE, 2, queue, inflight, self._taking_more))
        connection = self.client.connection
        connection.send_packed_command(connection.pack_commands(commands))

    def _brpop_read(self, **options: Any) -> bool:
        queue = self._moving_from
        if queue is None:
            return bool(super()._brpop_read(**options))
        connection = self.client.connection
        try:
            try:
                raw = self.client.parse_response(connection, "BLMOVE", **options)
                more = self._read_more(connection, options)
            except OutOfMemoryError:
                connection.disconnect()  # the script's reply may still be on its way: start afresh
                redis_full.wait()  # then reconnect, as after a lost connection
                raise
            except self.connection_errors:
                connection.disconnect()  # the next poll reconnects
                raise
            redis_full.over()
            taken = ([] if raw is None else [raw]) + more
            if not taken:  # timed out; an empty string is a (broken) message like any other
                raise kombu_redis.Empty()
            self._deliver_moved(queue, taken)
            if len(taken) < TAKE_MAX:
                # The queue is drained: let the next messages gather rather than wake once for each.
                time.sleep(float(self._option("take_pause_s") or 0))
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()

    def _read_more(self, connection: Any, options: dict[str, Any]) -> list[bytes]:
        """The script's reply: the messages it moved to the in-flight list (none when Redis refused it,
        e.g. full: they wait in the queue)."""
        if not self._taking_more:
            return []
        self._taking_more = 0
        try:
            return list(self.client.parse_response(connection, "EVAL", **options) or [])
        except OutOfMemoryError:
            redis_full.seen()
            return []
        except ResponseError as exc:
            log.warning("could not take more messages in one round trip: %s", exc)
            return []

    def _deliver_moved(self, queue: str, raws: list[bytes]) -> None:
        """Check each message taken, record those to deliver unacknowledged (one MULTI that also takes
        them out of flight), then hand them to Celery in the order taken."""
        key = inflight_key(queue, self.sep)
        self._queue_cycle.rotate(queue)
        accepted = self._option("accepted_tasks")
        checked = self._option("checked_queues")
        if checked is not None and queue not in checked:  # e.g. Celery's own reply lists
            accepted = None
        ready = [taken for raw in raws if (taken := self._check(queue, key, raw, accepted)) is not None]
        if not ready:
            return
        try:
            self._record_held(queue, key, ready)
            for at, taken in enumerate(ready):
                self._hand_over(queue, taken, ready[at + 1:], accepted)
        finally:
            for _, payload, _ in ready:  # a message kombu never built leaves no body behind
                self.decoded_bodies.pop(_tag(payload), None)
        if self.recorded:  # consumed without acks (no QoS.append): nothing to keep
            tags, self.recorded = list(self.recorded), set()
            with self.conn_or_acquire() as client, client.pipeline() as pipe:
                pipe.zrem(self.qos.unacked_index_key, *tags).hdel(self.qos.unacked_key, *tags).execute()

    def _hand_over(self, queue: str, taken: _Taken, later: list[_Taken], accepted: Any) -> None:
        """Deliver one recorded message to Celery; `later` are those taken with it, recorded, not yet
        delivered."""
        raw, payload, post_ids = taken
        tag = _tag(payload)
        try:
            self.connection._deliver(payload, queue)
        except (*self.connection_errors, MemoryError):
            # Recorded unacked, not delivered (nor those after it): back after the visibility timeout
            # (not held here, so never renewed).
            self.recorded.difference_update([tag, *(_tag(p) for _, p, _ in later)])
            raise
        except Exception as exc:
            self.recorded.discard(tag)
            if accepted is None:
                self.recorded.difference_update(_tag(p) for _, p, _ in later)
                raise
            # Well-formed to our eyes, yet Celery could not take it: it must not stop the worker.
            log.debug("the worker could not take a message", exc_info=True)
            reason = f"the worker could not take it: {type(exc).__name__}: {str(exc)[:200]}"
            self._dead_letter(queue, raw, reason, post_ids, unacked_tag=tag)

    def _check(self, queue: str, key: str, raw: bytes, accepted: Any) -> _Taken | None:
        """The message to deliver and its post ids; None when it was dead-lettered or parked instead."""
        if accepted is None:
            return raw, loads(bytes_to_str(raw)), []
        try:
            envelope = inspect(raw, tasks=frozenset(accepted))
        except PoisonMessage as poison:
            self._dead_letter(queue, raw, poison.reason, poison.post_ids, inflight=key)
            return None
        payload, post_ids = envelope.message, envelope.post_ids
        if envelope.bad_stamp:
            self._report(TransportEvent("bad_stamp", queue))
        _make_ours(payload, queue, f"{self._tag_prefix}.{next(self._tag_count)}")
        if envelope.due is not None and envelope.due > time.time() + PARK_AFTER_S:
            self._park(queue, raw, payload, envelope.due, post_ids)
            return None
        self.decoded_bodies[_tag(payload)] = envelope.body
        return raw, payload, post_ids

    def _record_held(self, queue: str, key: str, ready: list[_Taken]) -> None:
        """Record `ready` unacknowledged and take them out of the in-flight list, in one MULTI, before
        Celery sees any: a message is always in the queue, in flight or unacked. Restored to the queue
        it came from (the default exchange routes by queue name), whatever exchange and routing key
        the producer wrote."""
        now = time.time()
        tags = [_tag(payload) for _, payload, _ in ready]
        with self.conn_or_acquire() as client, client.pipeline() as pipe:
            pipe.zadd(self.qos.unacked_index_key, dict.fromkeys(tags, now))
            pipe.hset(self.qos.unacked_key, mapping={
                tag: kombu_redis.dumps([payload, "", queue])
                for tag, (_, payload, _) in zip(tags, ready, strict=True)})
            for raw, _, _ in ready:
                pipe.lrem(key, 1, raw)
            pipe.execute()
        self.recorded.update(tags)

    def _option(self, name: str) -> Any:
        return self.connection.client.transport_options.get(name)

    def _park(self, queue: str, raw: bytes, payload: dict[str, Any], due: float, post_ids: list[str]) -> None:
        """Keep a message due later in the delayed set (out of flight in the same MULTI), or refuse it
        when it is due further ahead than `max_delay_s`."""
        limit = float(self._option("max_delay_s") or 86_400)
        wait = due - time.time()
        if wait > limit:
            reason = (f"due in {wait:,.0f} s (eta, countdown or {DUE_HEADER}), "
                      f"more than MAX_DELAY_S ({limit:,.0f} s)")
            self._dead_letter(queue, raw, reason, post_ids, inflight=inflight_key(queue, self.sep))
            return
        with self.conn_or_acquire() as client, client.pipeline() as pipe:
            pipe.zadd(delayed_key(queue, self.sep), {kombu_redis.dumps(payload): due})
            pipe.lrem(inflight_key(queue, self.sep), 1, raw)
            pipe.execute()

    def _dead_letter(self, queue: str, raw: bytes, reason: str, post_ids: list[str], *,
                     inflight: str | None = None, unacked_tag: str | None = None) -> None:
        """Move `raw` to the dead-letter list in one MULTI with taking it out of flight (or unacked)."""
        key = dead_letters.dead_letter_key(queue)
        record = dead_letters.make_record(raw, reason=reason, queue=queue, post_ids=post_ids)
        keep = int(self._option("dead_letter_max") or 10_000)
        keep_bytes = int(self._option("dead_letter_max_bytes") or 64 * 2**20)
        with self.conn_or_acquire() as client, client.pipeline() as pipe:
            pipe.lpush(key, record).ltrim(key, 0, keep - 1).eval(_TRIM_BYTES, 1, key, keep_bytes)
            if inflight is not None:
                pipe.lrem(inflight, 1, raw)
            if unacked_tag is not None:
                self.qos._remove_from_indices(unacked_tag, pipe)
            pipe.execute()
        if unacked_tag is not None:
            kombu_redis.virtual.QoS.ack(self.qos, unacked_tag)  # forget it locally too
        ids = f" (post ids: {', '.join(map(ascii, post_ids[:5]))}{', ...' if len(post_ids) > 5 else ''})" \
            if post_ids else ""
        log.error("moved a message from queue %r to %r: %s%s", queue, key, reason, ids)
        self._report(TransportEvent("dead_letter", queue, reason, post_ids))

    def _report(self, event: TransportEvent) -> None:
        """Hand `event` to the `event_hook` option ("module:function"): the worker wires it to its
        metrics and `rejected` rows, so the transport itself knows nothing of either."""
        hook = self._option("event_hook")
        if not hook:
            return
        try:
            symbol_by_name(hook)(event)
        except Exception as exc:  # noqa: BLE001 - what happened is logged above; the message is safe
            log.error("the transport's event hook failed on %s: %s", event.kind, exc)

    def restore_inflight(self) -> int:
        """Put back messages stranded in the in-flight list longer than the visibility timeout."""
        queue = self._single_key()
        if queue is None:
            return 0
        key = inflight_key(queue, self.sep)
        keys = [key, f"{key}{self.sep}seen", queue, delayed_key(queue, self.sep),
                *priority_keys(queue, self.sep)]
        with self.conn_or_acquire() as client:
            return int(client.eval(_SWEEP, len(keys), *keys, time.time(), self.visibility_timeout,
                                   SWEEP_LIMIT))


@dataclass(frozen=True)
class TransportEvent:
    """What the transport did that a worker counts or records."""

    kind: Literal["dead_letter", "bad_stamp"]
    queue: str
    reason: str = ""
    post_ids: list[str] = field(default_factory=list)  # a dead letter's posts, for `rejected` rows


def _tag(payload: dict[str, Any]) -> str:
    return str(payload["properties"]["delivery_tag"])


def _make_ours(payload: dict[str, Any], queue: str, tag: str) -> None:
    """Take a checked message out of the producer's hands (see the module's docstring)."""
    properties = payload["properties"]
    properties["delivery_tag"] = tag
    properties["delivery_info"] = {**properties["delivery_info"], "exchange": "", "routing_key": queue}
    properties.pop("priority", None)
    payload["headers"].pop("expires", None)


# A full Redis (maxmemory with noeviction) refuses BLMOVE and every write, so no message can be taken
# without losing its in-flight record: an outage, like a lost connection. Celery then reconnects with
# backoff and the worker stays alive; `topicq health` names the cause (cli/health.py).
_OUTAGE_ERRORS = (*kombu_redis.Transport.connection_errors, OutOfMemoryError)


class Transport(kombu_redis.Transport):
    Channel = Channel
    connection_errors = _OUTAGE_ERRORS
