"""`topicq health` against a real worker on a private Redis that the test stops and starts again;
and the backlog a worker holds in its buffer, which the Redis list alone does not show."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.settings import Settings
from shared.wire.producer import Producer
from testkit.drills.services import PrivateRedis, free_port
from testkit.factories import labelled_posts, register_fake_model
from testkit.scrape import scrape, total
from testkit.waiting import wait_until
from testkit.worker_process import WorkerProcess, worker_env

pytestmark = pytest.mark.integration


@pytest.fixture
def env(postgres_url: str, broker: PrivateRedis, tmp_path: Path) -> dict[str, str]:
    # A batch that will not fill soon: the posts sent wait in the worker's buffer.
    return worker_env(postgres_url, broker.url(), tmp_path, METRICS_PORT=str(free_port()),
                      BATCH_SIZE="64", BATCH_WAIT_S="60", HEARTBEAT_INTERVAL_S="0.5")


def health(worker: WorkerProcess) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "cli.main", "health"], env=worker.env, capture_output=True,
                          text=True, timeout=30)
    return done.returncode, done.stdout + done.stderr


def test_health_follows_redis_and_the_depth_counts_buffered_posts(
    settings: Settings, env: dict[str, str], broker: PrivateRedis, tmp_path: Path
) -> None:
    register_fake_model(settings.db_url, settings.models_path)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.start()
        code, out = health(worker)
        assert code == 0, out
        assert "ok   worker" in out and f"{settings.model_name}:1" in out
        beat = json.loads(settings.heartbeat_path.read_text())["at"]
        wait_until(lambda: json.loads(settings.heartbeat_path.read_text())["at"] > beat, 5,
                   "the heartbeat loop refreshing the file")

        # Posts taken into the worker's buffer leave the list empty, yet they are the backlog.
        producer = Producer(settings)
        sent_at = time.time()
        for post_id, text, _ in labelled_posts(3, seed=9):
            producer.send(producer.validate(post_id, text))
        producer.close()
        client = broker.client()
        wait_until(lambda: client.llen(settings.queue) == 0, 15, "the worker taking the posts off the list")
        time.sleep(1.0)  # the posts age in the buffer: the oldest message's age is checked below
        samples = scrape(int(env["METRICS_PORT"]))
        assert total(samples, "topicq_queue_depth", queue=settings.queue) == 9
        assert total(samples, "topicq_queue_messages", state="unacked") == 9
        age = total(samples, "topicq_oldest_message_age_seconds", queue=settings.queue)
        assert 1.0 <= age <= time.time() - sent_at + 1

        # Redis goes away: not ready within 10 s, with the reason on the redis line.
        broker.stop(hard=True)
        wait_until(lambda: health(worker)[0] == 1, 10, "health failing while Redis is down")
        code, out = health(worker)
        assert code == 1 and "FAIL redis" in out, out
        assert total(scrape(int(env["METRICS_PORT"])), "topicq_redis_up") == 0
        # Back: ready again, the worker reconnected and kept beating.
        broker.start()
        wait_until(lambda: health(worker)[0] == 0, 30, "health passing once Redis is back")
        assert worker.alive()
        beat = json.loads(settings.heartbeat_path.read_text())["at"]
        wait_until(lambda: json.loads(settings.heartbeat_path.read_text())["at"] > beat, 5, "the heartbeat beating again")
        worker.stop()  # a worker that stops takes its heartbeat file with it
        code, out = health(worker)
        assert code == 1 and "FAIL worker" in out and "no heartbeat" in out, out
    finally:
        worker.kill()
