"""The standard options of Celery producers, as the transport meets them on the real Redis.

Whatever a producer sets (priority, protocol 1, eta/countdown, expires, a reused delivery tag, a
foreign routing key or exchange), each post is delivered once under its own id, held in this
queue's own bookkeeping, and never parked where no worker reads.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Queue

from shared.wire import dead_letters
from shared.wire.envelope import inspect
from shared.wire.transport import Transport, TransportEvent, delayed_key, inflight_key
from testkit import wire

TASKS = frozenset({wire.CLASSIFY, wire.CLASSIFY_CHUNK})
RECORDED: list[tuple[list[str], str]] = []


def record(event: TransportEvent) -> None:
    """Stands in for the worker's event hook, which writes a dead letter's `rejected` rows."""
    if event.kind == "dead_letter" and event.post_ids:
        RECORDED.append((event.post_ids, event.reason))


def protocol_1(kwargs: dict[str, Any], *, task: str = wire.CLASSIFY, queue: str = "topicq",
               eta: str | None = None) -> dict[str, Any]:
    """A Celery protocol-1 message: everything in the body, as `task_protocol = 1` and celery-node send it."""
    task_id = str(uuid.uuid4())
    body = {"task": task, "id": task_id, "args": [], "kwargs": kwargs, "retries": 0, "eta": eta,
            "expires": None, "utc": True, "callbacks": None, "errbacks": None, "timelimit": [None, None],
            "taskset": None, "chord": None}
    return {"body": base64.b64encode(json.dumps(body).encode()).decode(), "content-encoding": "utf-8",
            "content-type": "application/json", "headers": {"custom": "kept"},
            "properties": {"correlation_id": task_id, "delivery_mode": 2, "delivery_tag": str(uuid.uuid4()),
                           "body_encoding": "base64", "priority": 0,
                           "delivery_info": {"exchange": "", "routing_key": queue}}}


def decoded_body(message: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(message["body"]))


# --- protocol 1, without services ----------------------------------------------------------------

def test_a_protocol_1_message_is_taken_under_its_post_id() -> None:
    message = protocol_1({"id": "p-1", "text": "orbit"})
    task_id = json.loads(base64.b64decode(message["body"]))["id"]

    envelope = inspect(wire.encode(message), tasks=TASKS)

    assert envelope.task == wire.CLASSIFY and envelope.post_ids == ["p-1"]
    assert envelope.message["headers"]["task"] == wire.CLASSIFY
    assert envelope.message["headers"]["id"] == task_id
    assert envelope.message["headers"]["custom"] == "kept"
    args, kwargs, embed = decoded_body(envelope.message)
    assert (args, kwargs) == ([], {"id": "p-1", "text": "orbit"}) and not any(embed.values())


def test_a_protocol_1_chunk_names_its_posts_and_a_broken_one_its_post_ids() -> None:
    chunk = protocol_1({"posts": [{"id": "c-1", "text": "moon"}, {"id": "c-2", "text": "mars"}]},
                       task=wire.CLASSIFY_CHUNK)
    assert inspect(wire.encode(chunk), tasks=TASKS).post_ids == ["c-1", "c-2"]
    unknown = protocol_1({"id": "p-9", "text": "orbit"}, task="topicq.nosuch")
    with pytest.raises(Exception) as caught:
        inspect(wire.encode(unknown), tasks=TASKS)
    assert getattr(caught.value, "post_ids", None) == ["p-9"]  # never the Celery task id


def test_the_due_time_is_read_from_eta_and_the_due_header() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    message = wire.envelope(kwargs={"id": "p", "text": "orbit"})
    message["headers"]["eta"] = soon.isoformat()
    assert abs(inspect(wire.encode(message), tasks=TASKS).due - soon.timestamp()) < 0.01
    message["headers"]["eta"] = soon.replace(tzinfo=None).isoformat()  # naive: UTC, as Celery's utc=True
    assert abs(inspect(wire.encode(message), tasks=TASKS).due - soon.timestamp()) < 0.01
    message["headers"]["topicq_due"] = soon.timestamp() + 100
    assert inspect(wire.encode(message), tasks=TASKS).due == soon.timestamp() + 100
    assert inspect(wire.raw_message(wire.CLASSIFY, {"id": "p", "text": "x"}, "q"), tasks=TASKS).due is None


# --- the transport on the real Redis --------------------------------------------------------------

@pytest.fixture
def queue_name() -> str:
    return f"options-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def transport_connection(redis_url: str, **overrides: Any) -> Connection:
    options = {"priority_steps": [0], "visibility_timeout": 30, "accepted_tasks": sorted(TASKS),
               "checked_queues": None, "event_hook": f"{__name__}:record", "max_delay_s": 3600,
               **overrides}
    return Connection(redis_url, transport=Transport, transport_options=options)


def waiting(client: redis.Redis, queue: str) -> int:
    """Messages on the queue, and on its in-flight list (a closing consumer's last pop may land there)."""
    return int(client.llen(queue)) + int(client.llen(inflight_key(queue)))


def held_then_restored(redis_url: str, queue: str) -> list[Any]:
    """Take every message without acknowledging it, close the connection, then do what a sweep does
    with each message still unacknowledged: restore it by its record."""
    held: list[Any] = []
    consume(redis_url, queue, 2, ack=False, held=held)
    with transport_connection(redis_url) as conn, conn.channel() as channel:
        for message in held:
            channel.qos.restore_by_tag(message.delivery_tag)
    return held


def consume(redis_url: str, queue: str, seconds: float, *, ack: bool = True,
            held: list[Any] | None = None, sweep: bool = False) -> list[dict[str, Any]]:
    """The kwargs of the messages delivered within `seconds`, on a connection of its own (the sweep
    run first when asked)."""
    got: list[dict[str, Any]] = []

    def receive(body: list[Any], message: Any) -> None:
        got.append(body[1])
        if held is not None:
            held.append(message)
        if ack:
            message.ack()

    with transport_connection(redis_url) as conn, \
            Consumer(conn, queues=[Queue(queue)], callbacks=[receive], accept=["json"]) as consumer:
        if sweep:
            consumer.channel.restore_inflight()
        drain_until(conn, lambda: False, seconds)
    return got


def drain_until(conn: Connection, done: Callable[[], bool], seconds: float) -> None:
    """Deliver messages to the connection's consumers until `done()` or `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        try:
            conn.drain_events(timeout=0.3)
        except TimeoutError:
            pass


@pytest.mark.integration
@pytest.mark.parametrize("priority", [3, 6, 9])
def test_a_message_on_a_priority_list_is_taken(redis_url, client, queue_name, priority):
    # Where a stock Celery producer with priority=5 (steps 0, 3, 6, 9) puts its message.
    client.lpush(f"{queue_name}\x06\x16{priority}",
                 wire.raw_message(wire.CLASSIFY, {"id": f"pri-{priority}", "text": "orbit"}, queue_name))
    client.lpush(queue_name, wire.raw_message(wire.CLASSIFY, {"id": "plain", "text": "orbit"}, queue_name))

    got = consume(redis_url, queue_name, 2, sweep=True)

    assert sorted(k["id"] for k in got) == sorted(["plain", f"pri-{priority}"])
    assert client.llen(f"{queue_name}\x06\x16{priority}") == 0


@pytest.mark.integration
def test_a_protocol_1_message_goes_through_the_transport(redis_url, client, queue_name):
    client.lpush(queue_name, wire.encode(protocol_1({"id": "p1-post", "text": "orbit"}, queue=queue_name)))
    assert consume(redis_url, queue_name, 2) == [{"id": "p1-post", "text": "orbit"}]


@pytest.mark.integration
def test_messages_sharing_a_delivery_tag_are_each_held_and_restored(redis_url, client, queue_name):
    for n in range(5):
        message = wire.envelope(kwargs={"id": f"tag-{n}", "text": "orbit"}, queue=queue_name)
        message["properties"]["delivery_tag"] = "same-tag"
        client.lpush(queue_name, wire.encode(message))

    held = held_then_restored(redis_url, queue_name)

    assert len(held) == 5 and len({m.delivery_tag for m in held}) == 5
    assert waiting(client, queue_name) == 5 and not client.hexists("unacked", "same-tag")


@pytest.mark.integration
@pytest.mark.parametrize("field,value", [("routing_key", "celery"), ("exchange", "nope")])
def test_a_foreign_routing_key_or_exchange_comes_back_to_this_queue(redis_url, client, queue_name,
                                                                   field, value):
    for n in range(3):
        message = wire.envelope(kwargs={"id": f"foreign-{n}", "text": "orbit"}, queue=queue_name)
        message["properties"]["delivery_info"][field] = value
        client.lpush(queue_name, wire.encode(message))

    assert len(held_then_restored(redis_url, queue_name)) == 3

    assert waiting(client, queue_name) == 3 and not client.exists("celery")
    # Each is then delivered once, under its own id, from this queue.
    assert sorted(k["id"] for k in consume(redis_url, queue_name, 2, sweep=True)) == [f"foreign-{n}" for n in range(3)]
    assert client.llen(queue_name) == 0


@pytest.mark.integration
def test_a_delay_is_parked_outside_the_worker_and_released_when_due(redis_url, client, queue_name):
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    message = wire.envelope(kwargs={"id": "later", "text": "orbit"}, queue=queue_name)
    message["headers"]["eta"] = due.isoformat()
    client.lpush(queue_name, wire.encode(message))

    assert consume(redis_url, queue_name, 1) == []  # not handed to Celery: no prefetch slot held
    assert client.zcard(delayed_key(queue_name)) == 1 and client.llen(inflight_key(queue_name)) == 0
    time.sleep(max(0.0, due.timestamp() - time.time()) + 0.1)
    assert consume(redis_url, queue_name, 1, sweep=True) == [{"id": "later", "text": "orbit"}]
    assert client.zcard(delayed_key(queue_name)) == 0


@pytest.mark.integration
@pytest.mark.parametrize("header", ["eta", "topicq_due"])
def test_a_delay_beyond_the_bound_is_refused_with_the_post_id(redis_url, client, queue_name, header):
    RECORDED.clear()
    far = datetime.now(UTC) + timedelta(days=365)
    message = wire.envelope(kwargs={"id": "next-year", "text": "orbit"}, queue=queue_name)
    message["headers"][header] = far.isoformat() if header == "eta" else far.timestamp()
    client.lpush(queue_name, wire.encode(message))

    assert consume(redis_url, queue_name, 1) == []

    letters = dead_letters.read(client, queue_name)
    assert [letter.post_ids for letter in letters] == [["next-year"]]
    assert "MAX_DELAY_S" in letters[0].reason
    assert RECORDED and RECORDED[0][0] == ["next-year"]
    assert client.zcard(delayed_key(queue_name)) == 0


@pytest.mark.integration
def test_an_expired_message_is_still_answered(redis_url, client, queue_name):
    message = wire.envelope(kwargs={"id": "expired", "text": "orbit"}, queue=queue_name)
    message["headers"]["expires"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    client.lpush(queue_name, wire.encode(message))
    held: list[Any] = []
    assert consume(redis_url, queue_name, 1, held=held) == [{"id": "expired", "text": "orbit"}]
    assert held[0].headers.get("expires") is None  # Celery would discard it unanswered


@pytest.mark.integration
def test_a_live_consumer_keeps_what_it_holds_past_the_visibility_timeout(redis_url, client, queue_name):
    """A chunk waiting its turn in a live worker is not given to a second one; a dead worker's is."""
    client.lpush(queue_name, wire.raw_message(wire.CLASSIFY, {"id": "held", "text": "orbit"}, queue_name))
    options = {"priority_steps": [0], "visibility_timeout": 1, "accepted_tasks": sorted(TASKS)}
    with Connection(redis_url, transport=Transport, transport_options=options) as holder, \
            Connection(redis_url, transport=Transport, transport_options=options) as other:
        held: list[Any] = []
        with Consumer(holder, queues=[Queue(queue_name)], accept=["json"],
                      callbacks=[lambda body, message: held.append(message)]) as consumer:
            drain_until(holder, lambda: bool(held), 5)
            assert len(held) == 1
            with other.channel() as sweeper:
                for _ in range(5):  # 2.5 s, over twice the timeout: the holder renews, the sweeper finds nothing
                    consumer.channel.qos.renew_held()
                    sweeper.qos.restore_visible(num=100, interval=1)
                    assert client.llen(queue_name) == 0
                    time.sleep(0.5)
                time.sleep(1.2)  # no renewal: as if the holder had died
                sweeper.qos.restore_visible(num=100, interval=1)
                assert client.llen(queue_name) == 1


@pytest.mark.integration
def test_lists_other_than_the_checked_queues_are_not_dead_lettered(redis_url, client, queue_name):
    """Celery's own lists (e.g. `<uuid>.reply.celery.pidbox`) carry messages of other shapes."""
    reply = f"{queue_name}.reply.celery.pidbox"
    options = {"priority_steps": [0], "visibility_timeout": 30, "accepted_tasks": sorted(TASKS),
               "checked_queues": [queue_name]}
    with Connection(redis_url, transport=Transport, transport_options=options) as conn:
        conn.Producer().publish({"ok": True}, routing_key=reply, declare=[Queue(reply)], serializer="json")
        got: list[Any] = []
        with Consumer(conn, queues=[Queue(reply)], accept=["json"],
                      callbacks=[lambda body, message: (got.append(body), message.ack())]):
            drain_until(conn, lambda: bool(got), 5)
    assert got == [{"ok": True}] and not client.exists(dead_letters.dead_letter_key(reply))


@pytest.mark.integration
def test_the_dead_letters_are_bounded_by_bytes_too(redis_url, client, queue_name):
    for n in range(30):
        client.lpush(queue_name, f"junk {n} ".encode() + b"x" * 100_000)
    with transport_connection(redis_url, dead_letter_max_bytes=2**20) as conn, \
            Consumer(conn, queues=[Queue(queue_name)], accept=["json"]):
        drain_until(conn, lambda: not client.llen(queue_name), 10)
    letters = dead_letters.read(client, queue_name)
    assert 5 <= len(letters) < 15  # about 1 MiB of 100 kB entries
    assert letters[0].raw.startswith(b"junk 29 ")  # the newest kept
