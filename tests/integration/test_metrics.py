"""A real worker with METRICS_PORT: what it serves on /metrics matches what happened to the posts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared.model.embedders.fake import FakeEmbedder
from shared.settings import Settings
from shared.wire.producer import Producer
from shared.wire.protocol import CLASSIFY_TASK, SENT_AT_HEADER
from testkit.drills.services import free_port
from testkit.factories import labelled_posts, register_fake_model
from testkit.scrape import scrape, total
from testkit.waiting import wait_until
from testkit.wire import envelope, raw_message
from testkit.worker_process import WorkerProcess, wait_for_rows, worker_env

pytestmark = pytest.mark.integration


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def env(postgres_url: str, redis_url: str, tmp_path: Path, port: int) -> dict[str, str]:
    return worker_env(postgres_url, redis_url, tmp_path, METRICS_PORT=str(port), BATCH_WAIT_S="0.2")


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(env, tmp_path / "worker.log")
    yield process
    process.kill()


def test_metrics_count_every_post_its_latency_and_the_backlog(
    settings: Settings, env: dict[str, str], worker: WorkerProcess, port: int
) -> None:
    version = register_fake_model(settings.db_url, settings.models_path)
    worker.start()
    posts = labelled_posts(20, seed=7)  # 60 posts, stamped by the producer
    producer = Producer(settings)
    for post_id, text, _ in posts:
        producer.send(producer.validate(post_id, text))
    producer.close()
    client = redis.Redis.from_url(settings.redis_url)
    # From another language: no stamp (counted apart), and a stamp that is not epoch seconds.
    client.lpush(settings.queue, raw_message(CLASSIFY_TASK, {"id": "raw-1", "text": "rocket orbit"},
                                             settings.queue))
    bad = envelope(CLASSIFY_TASK, kwargs={"id": "raw-2", "text": "doctor patient"}, queue=settings.queue)
    bad["headers"][SENT_AT_HEADER] = "yesterday"
    client.lpush(settings.queue, json.dumps(bad))
    sent = len(posts) + 2

    assert wait_for_rows(settings.db_url, sent, timeout=60) == sent
    # The last acknowledgements follow the last commit by a moment.
    wait_until(lambda: total(scrape(port), "topicq_queue_depth") == 0, 15, "the queue depth falling to 0",
               interval=0.3)
    samples = scrape(port)

    assert total(samples, "topicq_posts_total") == sent
    assert total(samples, "topicq_posts_total", status="done", model_version=str(version)) == sent
    assert total(samples, "topicq_end_to_end_seconds_count") == len(posts)
    assert 0 < total(samples, "topicq_end_to_end_seconds_sum") < 60 * len(posts)
    assert total(samples, "topicq_end_to_end_unstamped_total") == 2
    assert total(samples, "topicq_bad_send_stamps_total") == 1
    assert total(samples, "topicq_queue_depth", queue=settings.queue) == 0
    assert total(samples, "topicq_oldest_message_age_seconds", queue=settings.queue) == 0
    assert total(samples, "topicq_batch_size_sum") == sent
    assert total(samples, "topicq_embed_seconds_count", embedder=FakeEmbedder().id) >= 1
    assert total(samples, "topicq_embedding_cache_misses_total") + \
        total(samples, "topicq_embedding_cache_hits_total") == sent
    [(labels, value)] = samples["topicq_model_info"]
    assert labels["name"] == settings.model_name and labels["version"] == str(version) and value == 1
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
        assert reply.status == 200 and json.loads(reply.read())["alive"] is True

    # `topicq status` sees the same, from Redis alone: the backlog and the worker's published figures.
    view: dict = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        done = subprocess.run([sys.executable, "-m", "cli.main", "status", "--once", "--format", "json"],
                              env=worker.env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        view = json.loads(done.stdout)
        if view["totals"]["done"] == sent:
            break
        time.sleep(1)
    assert view["totals"]["done"] == sent and view["backlog"]["depth"] == 0
    [seen] = view["workers"]
    assert seen["serving"] == f"{settings.model_name}:{version}"
    assert view["latency_s"]["posts"] == len(posts) and view["latency_s"]["unstamped"] == 2, view
    assert 0 < view["latency_s"]["p50"] <= view["latency_s"]["p95"] < 60
