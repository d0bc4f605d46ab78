"""`topicq dead-letters resend` ends, and does not send again what came back broken.

A worker dead-letters a still-broken message again as soon as it is re-sent; a resend that
took the oldest entry until none was left then never ended while workers ran. Here the
"worker" is this test, moving what the resend queued back to the dead letters as the
transport does (same raw bytes, a new record).
"""

from __future__ import annotations

import threading

import pytest
import redis
from click.testing import CliRunner

from cli.main import main
from shared.wire import dead_letters
from testkit import wire


def _dead_letter_back(client: redis.Redis, queue: str) -> int:
    """What a worker's transport does with each broken message on the queue; how many it moved."""
    moved = 0
    while (raw := client.rpop(queue)) is not None:
        client.lpush(dead_letters.dead_letter_key(queue), dead_letters.make_record(
            raw, reason="unknown task 'topicq.nosuch'", queue=queue, post_ids=[]))
        moved += 1
    return moved


@pytest.fixture
def broken(redis_url: str) -> tuple[redis.Redis, str, int]:
    queue = "resend-test"
    client = redis.Redis.from_url(redis_url)
    for n in range(20):
        raw = wire.raw_message("topicq.nosuch", {"id": f"junk-{n}"}, queue).encode()
        client.lpush(dead_letters.dead_letter_key(queue), dead_letters.make_record(
            raw, reason="unknown task 'topicq.nosuch'", queue=queue, post_ids=[f"junk-{n}"]))
    return client, queue, 20


def test_a_resend_moves_each_entry_once_and_not_again_once_it_came_back(broken) -> None:
    client, queue, n = broken
    first = dead_letters.resend(client, queue)
    assert first.moved == n and client.llen(queue) == n
    assert _dead_letter_back(client, queue) == n  # still broken: all back

    plain = dead_letters.resend(client, queue)
    assert (plain.moved, plain.skipped) == (0, n)  # came back after a resend: not again by default
    assert client.llen(queue) == 0 and dead_letters.count(client, queue) == n

    forced = dead_letters.resend(client, queue, again=True)
    assert forced.moved == n
    _dead_letter_back(client, queue)
    counts = dead_letters.resent_counts(client, queue, dead_letters.read(client, queue))
    assert counts == [2] * n


def test_a_resend_ends_while_a_worker_keeps_sending_them_back(broken) -> None:
    client, queue, n = broken
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            _dead_letter_back(client, queue)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        report = dead_letters.resend(client, queue, again=True)
    finally:
        stop.set()
        thread.join()
    assert report.moved <= n


def test_the_verb_says_what_it_skipped_and_again_forces(broken, redis_url, monkeypatch) -> None:
    client, queue, n = broken
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("QUEUE", queue)
    runner = CliRunner()
    assert "re-sent 20" in runner.invoke(main, ["dead-letters", "resend"]).output
    _dead_letter_back(client, queue)
    plain = runner.invoke(main, ["dead-letters", "resend"])
    assert plain.exit_code == 0 and "re-sent 0" in plain.output and "--again" in plain.output
    forced = runner.invoke(main, ["dead-letters", "resend", "--again", "--limit", "5"])
    assert forced.exit_code == 0 and "re-sent 5" in forced.output
