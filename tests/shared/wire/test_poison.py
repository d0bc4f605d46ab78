"""Poison messages: whatever is on the list, the worker neither stops nor loops.

Unit tests check the envelope rules and the payload contract; the integration
tests push raw list entries through the real transport on the real Redis.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from click.testing import CliRunner
from kombu import Connection, Consumer, Queue

from cli.main import main
from shared.database.results import REJECTED, ResultRow, write_rows
from shared.errors import InvalidPostError
from shared.wire import dead_letters
from shared.wire.envelope import PoisonMessage, inspect
from shared.wire.payload import parse_post
from shared.wire.protocol import ATTEMPT_HEADER
from shared.wire.transport import Transport, TransportEvent, inflight_key
from testkit import wire
from testkit.drills.fuzz_cases import ENVELOPE_BUILDERS

TASKS = frozenset({wire.CLASSIFY, wire.CLASSIFY_CHUNK})


@pytest.mark.parametrize("builder", ENVELOPE_BUILDERS, ids=lambda b: b(0, random.Random(0)).kind)
def test_every_broken_envelope_is_named_with_the_ids_it_still_carries(builder) -> None:
    case = builder(7, random.Random(7))
    with pytest.raises(PoisonMessage) as caught:
        inspect(case.list_entry("topicq"), tasks=TASKS)
    assert caught.value.reason.strip()
    assert sorted(caught.value.post_ids) == sorted(case.meta["ids"])


def test_well_formed_messages_pass_as_they_are() -> None:
    single = wire.raw_message(wire.CLASSIFY, {"id": "p-1", "text": "orbit", "metadata": {"n": 10**30}}, "topicq")
    chunk = wire.raw_message(wire.CLASSIFY_CHUNK, {"posts": [{"id": "c-1", "text": "moon"}]}, "topicq")
    message = wire.envelope(kwargs={"id": "p-2", "text": "orbit"})
    message["headers"].update({ATTEMPT_HEADER: 3, "eta": "2026-11-30T14:21:00+00:00", "timelimit": [None, None],
                               "stamps": {}, "stamped_headers": None})
    for entry in (single, chunk, wire.encode(message)):
        assert inspect(entry, tasks=TASKS).message == json.loads(entry)
    assert inspect(single, tasks=TASKS).post_ids == ["p-1"]


@pytest.mark.parametrize("attempt", [2**63 - 1, 10**30, 99, 0])
def test_attempt_is_not_part_of_the_payload(attempt: int) -> None:
    with pytest.raises(InvalidPostError, match="attempt") as caught:
        parse_post({"id": "p", "text": "orbit", "attempt": attempt}, max_text_chars=100)
    assert caught.value.post_id == "p"


def test_null_metadata_means_none() -> None:
    assert parse_post({"id": "p", "text": "orbit", "metadata": None}, max_text_chars=100).metadata == {}


def test_a_row_the_database_refuses_does_not_hold_back_its_neighbours(sqlite_url: str) -> None:
    # An integer SQLite cannot hold (64-bit INTEGER) in one row of a batch.
    rows = [ResultRow(post_id="good", model_name="topics", model_version=1, status="done", label="x"),
            ResultRow(post_id="huge", model_name="topics", model_version=1, status="done", attempts=2**70)]
    write_rows(sqlite_url, rows)
    from shared.database.results import query_results

    by_id = {r["post_id"]: r for r in query_results(sqlite_url)}
    assert by_id["good"]["status"] == "done"
    assert by_id["huge"]["status"] == REJECTED and "could not be stored" in by_id["huge"]["error"]


# --- the transport on the real Redis ---------------------------------------------------------------

RECORDED: list[tuple[list[str], str]] = []


def record(event: TransportEvent) -> None:
    """Stands in for the worker's event hook, which writes a dead letter's `rejected` rows."""
    if event.kind == "dead_letter" and event.post_ids:
        RECORDED.append((event.post_ids, event.reason))


@pytest.fixture
def queue_name() -> str:
    return f"poison-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def connection(redis_url: str) -> Iterator[Connection]:
    options = {"priority_steps": [0], "visibility_timeout": 1, "accepted_tasks": sorted(TASKS),
               "event_hook": f"{__name__}:record", "dead_letter_max": 50}
    with Connection(redis_url, transport=Transport, transport_options=options) as conn:
        yield conn


def consume(conn: Connection, queue: Queue, seconds: float) -> list[dict]:
    got: list[dict] = []

    def receive(body: list, message) -> None:  # noqa: ANN001
        got.append(body[1])
        message.ack()

    with Consumer(conn, queues=[queue], callbacks=[receive], accept=["json"]):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.5)
            except TimeoutError:
                pass
    return got


@pytest.mark.integration
def test_broken_entries_go_whole_to_the_dead_letters_and_good_ones_through(connection, redis_url, queue_name):
    RECORDED.clear()
    client = redis.Redis.from_url(redis_url)
    broken = [b"", b"null", b"[" * 100_000, b"\xff\xfe", wire.encode({**wire.envelope(kwargs={"id": "d-1", "text": "x"}),
                                                                       "properties": "x"}).encode()]
    good = wire.raw_message(wire.CLASSIFY, {"id": "g-1", "text": "orbit"}, queue_name)
    for entry in [*broken, good]:
        client.lpush(queue_name, entry)

    got = consume(connection, Queue(queue_name), seconds=3)

    assert got == [{"id": "g-1", "text": "orbit"}]
    letters = dead_letters.read(client, queue_name)
    assert sorted(letter.raw for letter in letters) == sorted(broken)  # whole and unchanged
    assert all(letter.reason for letter in letters)
    assert client.llen(queue_name) == 0 and client.llen(inflight_key(queue_name)) == 0
    assert client.hlen("unacked") == 0
    assert RECORDED == [(["d-1"], "properties must be a JSON object, got a JSON string")]


@pytest.mark.integration
def test_the_dead_letters_are_bounded(connection, redis_url, queue_name):
    client = redis.Redis.from_url(redis_url)
    for n in range(60):
        client.lpush(queue_name, f"not a message {n}")
    consume(connection, Queue(queue_name), seconds=3)
    letters = dead_letters.read(client, queue_name)
    assert len(letters) == 50 and letters[0].raw == b"not a message 59"  # the newest kept


@pytest.mark.integration
def test_dead_letters_verb_counts_lists_resends_and_purges(redis_url, queue_name, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("QUEUE", queue_name)
    client = redis.Redis.from_url(redis_url)
    for n in range(3):
        client.lpush(dead_letters.dead_letter_key(queue_name), dead_letters.make_record(
            f"entry {n}".encode(), reason=f"reason {n}", queue=queue_name, post_ids=[f"p{n}"]))
    runner = CliRunner()

    assert runner.invoke(main, ["dead-letters", "count"]).output.strip() == "3"
    listed = runner.invoke(main, ["dead-letters", "list", "--format", "jsonl"])
    assert [json.loads(line)["reason"] for line in listed.output.splitlines()] == ["reason 2", "reason 1", "reason 0"]
    resent = runner.invoke(main, ["dead-letters", "resend", "--limit", "2"])
    assert resent.exit_code == 0 and "re-sent 2" in resent.output
    assert client.lrange(queue_name, 0, -1) == [b"entry 1", b"entry 0"]  # oldest first, unchanged
    purged = runner.invoke(main, ["dead-letters", "purge", "--yes"])
    assert "deleted 1" in purged.output and dead_letters.count(client, queue_name) == 0


def test_a_worker_that_stops_on_an_error_exits_non_zero(sqlite_url, redis_url, tmp_path, monkeypatch,
                                                        caplog) -> None:
    """Celery's exit status reaches the shell, so a supervisor restarts a worker that stopped on an error;
    the stopped worker no longer shows in the list of running workers."""
    from shared.settings import get_settings
    from testkit.factories import register_fake_model
    from worker import worker_state
    from worker.app import app
    from worker.presence import serving_workers

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("EMBEDDER", "fake")
    monkeypatch.setenv("REDIS_URL", redis_url)
    get_settings.cache_clear()  # importing the app read the settings before these
    monkeypatch.setattr(worker_state, "_state", None)  # a worker process builds its runtime once, afresh
    register_fake_model(sqlite_url, tmp_path / "models")
    started: list[list[str]] = []

    loaded_before_start: list[bool] = []

    listed: list[list[str]] = []

    def celery_stops_on_an_error(argv: list[str]) -> int:  # Celery's WorkController: EX_FAILURE
        started.append(argv)
        listed.append([s.serving for s in serving_workers(redis_url)])
        loaded_before_start.append(any("loaded in" in r.getMessage() for r in caplog.records))
        return 1

    monkeypatch.setattr(app, "start", celery_stops_on_an_error)
    with caplog.at_level(logging.INFO, logger="worker"):
        result = CliRunner().invoke(main, ["worker"])
    # The model and the embedder were loaded, and said so, before Celery started consuming.
    assert loaded_before_start == [True]
    assert started and started[0][:1] == ["worker"] and "topicq@%h" in started[0], (result.output, result.exception)
    assert result.exit_code == 1, result.output
    assert listed == [["topics:1"]] and serving_workers(redis_url) == []
