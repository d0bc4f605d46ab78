"""Celery's remote control is off: a broadcast on the broker cannot stop a worker.

Anyone who can publish to Redis could otherwise send `cancel_consumer` (the worker stays alive,
its heartbeat fresh and `topicq health` ok, but it takes nothing) or `shutdown`. topicq has its
own status and health, so its workers listen to no control messages at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from shared.wire.celery_config import celery_config
from shared.wire.producer import Producer
from testkit.factories import labelled_posts, register_fake_model
from testkit.worker_process import WorkerProcess, count_rows, worker_env

pytestmark = pytest.mark.integration


@pytest.fixture
def env(postgres_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return worker_env(postgres_url, redis_url, tmp_path)


@pytest.fixture
def worker(settings: Settings, env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    register_fake_model(settings.db_url, settings.models_path)
    process = WorkerProcess(env, tmp_path / "worker.log")
    process.start()
    yield process
    process.kill()


def rows_while_alive(worker: WorkerProcess, db_url: str, expected: int, timeout: float) -> int:
    """Rows written, waiting until `expected` or until the worker exits."""
    deadline = time.monotonic() + timeout
    count = count_rows(db_url)
    while count < expected and worker.alive() and time.monotonic() < deadline:
        time.sleep(0.5)
        count = count_rows(db_url)
    return count


def send(settings: Settings, posts: list[tuple[str, str, str]]) -> None:
    producer = Producer(settings)
    try:
        for post_id, text, _ in posts:
            producer.send(producer.validate(post_id, text))
    finally:
        producer.close()


COMMANDS = {
    # What `celery -A worker.app control cancel_consumer <queue>` sends: the worker would stay
    # alive, heartbeat fresh, and take nothing.
    "cancel_consumer": lambda control, queue: control.cancel_consumer(queue, reply=False),
    # What `celery -A worker.app control shutdown` sends: the worker would exit 0.
    "shutdown": lambda control, queue: control.shutdown(),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_control_command_on_the_broker_neither_stops_nor_idles_a_worker(
    command: str, settings: Settings, worker: WorkerProcess
) -> None:
    from celery import Celery

    sender = Celery("control-sender", set_as_current=False)
    sender.conf.update(celery_config(settings))
    try:
        COMMANDS[command](sender.control, settings.queue)
    finally:
        sender.close()
    posts = labelled_posts(5, seed=11)
    send(settings, posts)
    rows = rows_while_alive(worker, settings.db_url, len(posts), timeout=60)
    assert rows == len(posts), worker.log()[-3000:]
    assert worker.alive()
