"""The broker transport keeps every message in the queue, the in-flight list or the unacked hash,
so a crash between the pop and the unacked record cannot lose it (real Redis, real kombu)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue

from shared.wire.transport import Transport, inflight_key

pytestmark = pytest.mark.integration


@pytest.fixture
def queue_name() -> str:
    return f"transport-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def connection(redis_url: str) -> Iterator[Connection]:
    with Connection(redis_url, transport=Transport,
                    transport_options={"priority_steps": [0], "visibility_timeout": 1}) as conn:
        yield conn


def publish(conn: Connection, queue: Queue, bodies: list[dict[str, int]]) -> None:
    with conn.channel() as channel:
        producer = Producer(channel)
        for body in bodies:
            producer.publish(body, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue],
                             serializer="json")


def drain(conn: Connection, queue: Queue, expected: int, *, ack: bool = True,
          on_message: list | None = None, timeout: float = 10.0) -> list[dict]:
    got: list[dict] = []

    def receive(body: dict, message) -> None:
        got.append(body)
        if on_message is not None:
            on_message.append(message)
        if ack:
            message.ack()

    with Consumer(conn, queues=[queue], callbacks=[receive], accept=["json"]):
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=1)
            except TimeoutError:
                pass
    return got


def test_every_delivered_message_is_recorded_unacked_and_out_of_flight(connection, redis_url, queue_name):
    queue = Queue(queue_name, Exchange(queue_name, "direct"), routing_key=queue_name)
    publish(connection, queue, [{"n": n} for n in range(20)])
    client = redis.Redis.from_url(redis_url)
    held: list = []

    got = drain(connection, queue, 20, ack=False, on_message=held)

    assert sorted(b["n"] for b in got) == list(range(20))
    assert client.llen(inflight_key(queue_name)) == 0
    assert {m.delivery_tag.encode() for m in held} <= set(client.hkeys("unacked"))
    for message in held:
        message.ack()
    assert not {m.delivery_tag.encode() for m in held} & set(client.hkeys("unacked"))


def test_a_message_stranded_between_pop_and_record_comes_back(connection, redis_url, queue_name):
    queue = Queue(queue_name, Exchange(queue_name, "direct"), routing_key=queue_name)
    publish(connection, queue, [{"n": 7}])
    client = redis.Redis.from_url(redis_url)
    # A consumer popped it and died (or the broker did) before recording it unacked.
    stranded = client.blmove(queue_name, inflight_key(queue_name), 1, "RIGHT", "LEFT")
    assert stranded is not None and client.llen(queue_name) == 0

    with connection.channel() as channel:
        consumer = Consumer(channel, queues=[queue], accept=["json"])
        consumer.consume()
        assert channel.restore_inflight() == 0  # first sighting: it may still be on its way
        time.sleep(1.2)  # past the visibility timeout
        assert channel.restore_inflight() == 1
        consumer.cancel()

    assert client.llen(inflight_key(queue_name)) == 0
    assert drain(connection, queue, 1) == [{"n": 7}]


def test_one_read_takes_what_waits_up_to_the_prefetch_credit(connection, redis_url, queue_name):
    """One round trip takes several waiting messages, never more than the consumer may hold, and each is
    recorded unacked and out of flight before the consumer sees it."""
    queue = Queue(queue_name, Exchange(queue_name, "direct"), routing_key=queue_name)
    publish(connection, queue, [{"n": n} for n in range(30)])
    client = redis.Redis.from_url(redis_url)
    got: list[dict] = []
    recorded_when_seen: list[bool] = []

    def receive(body: dict, message) -> None:
        got.append(body)
        recorded_when_seen.append(client.hexists("unacked", message.delivery_tag))

    with Consumer(connection, queues=[queue], callbacks=[receive], accept=["json"], prefetch_count=10):
        connection.drain_events(timeout=2)  # one read

    assert [b["n"] for b in got] == list(range(10))  # oldest first, as many as the credit allows
    assert all(recorded_when_seen)
    assert client.llen(inflight_key(queue_name)) == 0 and client.llen(queue_name) == 20
    assert client.hlen("unacked") == 10


def test_messages_taken_together_and_stranded_all_come_back(connection, redis_url, queue_name):
    """A consumer killed after taking several messages in one round trip, before recording them:
    every one of them goes back to the queue after the visibility timeout."""
    from shared.wire.transport import _TAKE_MORE

    queue = Queue(queue_name, Exchange(queue_name, "direct"), routing_key=queue_name)
    publish(connection, queue, [{"n": n} for n in range(5)])
    client = redis.Redis.from_url(redis_url)
    assert len(client.eval(_TAKE_MORE, 2, queue_name, inflight_key(queue_name), 5)) == 5
    assert client.llen(queue_name) == 0

    with connection.channel() as channel:
        consumer = Consumer(channel, queues=[queue], accept=["json"])
        consumer.consume()
        assert channel.restore_inflight() == 0
        time.sleep(1.2)
        assert channel.restore_inflight() == 5
        consumer.cancel()

    assert sorted(b["n"] for b in drain(connection, queue, 5)) == list(range(5))


def test_a_batch_of_acks_removes_every_record_in_one_go(connection, redis_url, queue_name):
    """`ack_many` removes the batch's unacked records; each message's own ack then only forgets it locally,
    and a message left out of the batch keeps its record until acked."""
    queue = Queue(queue_name, Exchange(queue_name, "direct"), routing_key=queue_name)
    publish(connection, queue, [{"n": n} for n in range(6)])
    client = redis.Redis.from_url(redis_url)
    held: list = []
    drain(connection, queue, 6, ack=False, on_message=held)
    assert client.hlen("unacked") == 6

    held[0].channel.qos.ack_many([m.delivery_tag for m in held[:5]])

    assert client.hkeys("unacked") == [held[5].delivery_tag.encode()]
    assert client.zrange("unacked_index", 0, -1) == [held[5].delivery_tag.encode()]
    for message in held:
        message.ack()
    qos = held[0].channel.qos
    assert client.hlen("unacked") == 0 and len(qos._delivered) - len(qos._dirty) == 0  # none held


def test_messages_in_flight_a_short_time_are_left_alone(connection, redis_url, queue_name):
    queue = Queue(queue_name, Exchange(queue_name, "direct"), routing_key=queue_name)
    publish(connection, queue, [{"n": 1}])
    client = redis.Redis.from_url(redis_url)
    client.blmove(queue_name, inflight_key(queue_name), 1, "RIGHT", "LEFT")

    with connection.channel() as channel:
        consumer = Consumer(channel, queues=[queue], accept=["json"])
        consumer.consume()
        assert channel.restore_inflight() == 0
        assert channel.restore_inflight() == 0  # seen twice, but not for longer than the timeout
        consumer.cancel()

    assert client.llen(inflight_key(queue_name)) == 1 and client.llen(queue_name) == 0


def test_two_queues_fall_back_to_brpop_and_still_deliver(connection, redis_url, queue_name):
    queues = [Queue(f"{queue_name}-{i}", Exchange(f"{queue_name}-{i}", "direct"), routing_key=f"{queue_name}-{i}")
              for i in range(2)]
    for i, queue in enumerate(queues):
        publish(connection, queue, [{"n": i}])
    got: list[dict] = []
    with Consumer(connection, queues=queues, callbacks=[lambda body, m: (got.append(body), m.ack())],
                  accept=["json"]):
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            try:
                connection.drain_events(timeout=1)
            except TimeoutError:
                pass
    assert sorted(b["n"] for b in got) == [0, 1]
    assert redis.Redis.from_url(redis_url).hlen("unacked") == 0


def test_restoring_at_exit_after_a_reconnect_closed_the_channel_does_not_crash(queue_name):
    """A SIGTERM during a reconnect: kombu's exit hook puts back what the consumer held on a channel
    whose connection is gone. It cannot, must not crash (exit 1), and the messages stay recorded."""
    from testkit.drills.services import PrivateRedis

    with PrivateRedis(aof=True) as broker:
        queue = Queue(queue_name, Exchange(queue_name, "direct"), routing_key=queue_name)
        conn = Connection(broker.url(), transport=Transport,
                          transport_options={"priority_steps": [0], "visibility_timeout": 1})
        publish(conn, queue, [{"n": 1}])
        held: list = []
        assert drain(conn, queue, 1, ack=False, on_message=held) == [{"n": 1}]
        channel = held[0].channel
        broker.stop()
        channel.connection = None  # as kombu leaves a channel it closed while reconnecting
        channel.qos.restore_unacked_once()  # the exit hook: must not raise
        broker.start()
        assert broker.client().hlen("unacked") == 1  # still recorded: back after the timeout


def test_a_checked_message_reaches_the_consumer_decoded_once(redis_url, queue_name):
    """The envelope check decodes the body; the consumer gets that decoding (no second JSON decode),
    equal to what kombu would decode, and no decoded body stays behind."""
    from kombu.serialization import loads as kombu_loads

    from testkit import wire

    client = redis.Redis.from_url(redis_url)
    client.lpush(queue_name, wire.raw_message(wire.CLASSIFY, {"id": "p-1", "text": "hello"}, queue_name))
    queue = Queue(queue_name, Exchange(queue_name, "direct"), routing_key=queue_name)
    options = {"priority_steps": [0], "visibility_timeout": 5, "accepted_tasks": [wire.CLASSIFY]}
    with Connection(redis_url, transport=Transport, transport_options=options) as conn:
        held: list = []  # on_message: kombu hands the message over without decoding it
        with Consumer(conn, queues=[queue], on_message=held.append, accept=["json"]):
            conn.drain_events(timeout=2)
        message = held[0]
        assert message._decoded_cache == [[], {"id": "p-1", "text": "hello"}, wire.NO_LINKS]
        assert message._decoded_cache == kombu_loads(message.body, message.content_type,
                                                     message.content_encoding)
        assert message.channel.decoded_bodies == {}
        message.ack()
