"""The backlog a scrape reads from Redis: every place a message waits is counted, and counting
costs Redis counts, never copies of the messages, whatever their size (shared/wire/backlog.py)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import redis

from cli.status_view import build_view
from shared.wire import backlog as backlog_module
from shared.wire.backlog import Backlog, BacklogCollector, read_backlog
from shared.wire.protocol import CLASSIFY_TASK, SENT_AT_HEADER
from testkit.drills.services import PrivateRedis
from testkit.wire import envelope

pytestmark = pytest.mark.integration

SEP = "\x06\x16"  # kombu's separator: a Celery producer with priority=5 pushes onto `<queue>\x06\x163`


@pytest.fixture
def queue() -> str:
    return f"backlog-{uuid.uuid4().hex[:8]}"


def message(queue: str, sent_at: float | None = None, *, text: str = "rocket orbit") -> dict[str, Any]:
    built = envelope(CLASSIFY_TASK, kwargs={"id": uuid.uuid4().hex, "text": text}, queue=queue)
    if sent_at is not None:
        built["headers"][SENT_AT_HEADER] = sent_at
    return built


def hold(client: redis.Redis, queue: str, built: dict[str, Any], taken_at: float) -> None:
    """What kombu records for a message a worker holds: [message, exchange, routing_key]."""
    tag = built["properties"]["delivery_tag"]
    client.hset("unacked", tag, json.dumps([built, "", queue]))
    client.zadd("unacked_index", {tag: taken_at})


def test_every_place_a_message_waits_is_counted(broker: PrivateRedis, queue: str) -> None:
    client = broker.client()
    now = time.time()
    client.lpush(queue, json.dumps(message(queue, now - 5)), json.dumps(message(queue, now - 4)))
    client.lpush(f"{queue}{SEP}3", json.dumps(message(queue, now - 50)))  # priority=5 from Celery
    client.lpush(f"{queue}{SEP}9", json.dumps(message(queue, now - 6)))
    client.lpush(f"{queue}{SEP}inflight", json.dumps(message(queue, now - 7)))
    hold(client, queue, message(queue, now - 8), taken_at=now - 1)
    hold(client, queue, message(queue, now - 9), taken_at=now - 2)
    client.zadd(f"{queue}{SEP}delayed", {json.dumps(message(queue, now - 3000)): now + 60})

    seen = read_backlog(client, queue)

    assert (seen.ready, seen.in_flight, seen.unacked, seen.delayed) == (4, 1, 2, 1)
    assert seen.depth == 8
    # The oldest waiting stamp: a priority sub-list's next message (delayed ones wait by design).
    assert seen.oldest_sent_at == pytest.approx(now - 50, abs=0.01)
    samples = {(m.name, tuple(sorted(s.labels.items()))): s.value
               for m in BacklogCollector(broker.url(), queue).collect() for s in m.samples}
    assert samples[("topicq_queue_depth", (("queue", queue),))] == 8
    assert samples[("topicq_queue_messages", (("queue", queue), ("state", "delayed")))] == 1
    assert samples[("topicq_queue_messages", (("queue", queue), ("state", "ready")))] == 4
    # `topicq status` counts the same.
    view = build_view(queue, seen, [], now=now)
    assert view["backlog"]["depth"] == 8 and view["backlog"]["delayed"] == 1


def test_key_names_are_the_transports(queue: str) -> None:
    assert backlog_module.inflight_key(queue) == f"{queue}{SEP}inflight"
    assert backlog_module.delayed_key(queue) == f"{queue}{SEP}delayed"
    assert backlog_module.ready_keys(queue) == [queue] + [f"{queue}{SEP}{n}" for n in range(1, 10)]


def test_messages_delayed_by_design_make_no_age() -> None:
    parked = Backlog(ready=0, in_flight=0, unacked=0, delayed=3, oldest_sent_at=None)
    assert parked.depth == 3 and parked.oldest_age_s() == 0.0


def test_the_age_comes_from_the_send_stamp_header_only(broker: PrivateRedis, queue: str) -> None:
    client = broker.client()
    unstamped = message(queue)
    unstamped["properties"][SENT_AT_HEADER] = 5.0  # not where the contract puts the stamp
    unstamped["headers"]["note"] = f'"{SENT_AT_HEADER}": 6'
    client.lpush(queue, json.dumps(unstamped))

    seen = read_backlog(client, queue)

    assert seen.ready == 1 and seen.oldest_sent_at is None and seen.oldest_age_s() is None
    # Held by a worker of this queue: its stamp counts; one of another queue of the db does not.
    hold(client, f"{queue}-other", message(f"{queue}-other", 100.0), taken_at=time.time() - 30)
    assert read_backlog(client, queue).oldest_sent_at is None
    client.hdel("unacked", *client.hkeys("unacked"))
    client.delete("unacked_index")
    hold(client, queue, message(queue, time.time() - 20), taken_at=time.time() - 10)
    assert 19 <= (read_backlog(client, queue).oldest_age_s() or 0) <= 60


def commandstats(client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in client.info("commandstats").items()}


def test_a_scrape_counts_and_copies_no_message_bodies(broker: PrivateRedis, queue: str) -> None:
    client = broker.client()
    big = "x" * (2 * 1024 * 1024)  # 2 MB posts, held and waiting
    now = time.time()
    for i in range(6):
        client.lpush(queue, json.dumps(message(queue, now - 100 + i, text=big)))
        hold(client, queue, message(queue, now - 200 + i, text=big), taken_at=now - 60 + i)
        client.lpush(f"{queue}{SEP}inflight", json.dumps(message(queue, now - 300 + i, text=big)))
    client.config_resetstat()

    seen = read_backlog(client, queue)

    assert (seen.ready, seen.in_flight, seen.unacked) == (6, 6, 6)
    assert seen.oldest_sent_at == pytest.approx(now - 300, abs=0.01)  # the in-flight list's oldest
    used = commandstats(client)
    used.pop("info", None)
    used.pop("config|resetstat", None)
    copies = {"lrange", "hgetall", "hvals", "hscan", "sort", "eval", "evalsha", "zrangebyscore"} & set(used)
    assert not copies, used
    # Bodies are read one per place at most (the next due, the in-flight oldest, the longest held).
    assert used.get("lindex", 0) <= 11 and used.get("hget", 0) <= 1, used
