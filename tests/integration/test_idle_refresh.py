"""An idle worker follows its aliases: with no post sent, a promotion (and a new challenger in shadow)
is loaded within MODEL_REFRESH_S, and the heartbeat, status and metrics name it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.model import registry
from shared.settings import Settings
from shared.wire.producer import Producer
from testkit.drills.services import free_port
from testkit.factories import register_fake_model
from testkit.scrape import scrape
from testkit.waiting import wait_until
from testkit.worker_process import WorkerProcess, wait_for_rows, worker_env
from worker.heartbeat import read_heartbeat
from worker.presence import serving_workers

pytestmark = pytest.mark.integration

FOLLOW_TIMEOUT_S = 30  # generous on a loaded machine; the wait ends as soon as the condition holds


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def env(postgres_url: str, redis_url: str, tmp_path: Path, port: int) -> dict[str, str]:
    return worker_env(postgres_url, redis_url, tmp_path, MODEL_REFRESH_S="0.5", HEARTBEAT_INTERVAL_S="0.5",
                      HEARTBEAT_FILE=str(tmp_path / "heartbeat.json"), METRICS_PORT=str(port))


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(env, tmp_path / "worker.log")
    yield process
    process.stop()


def followed(condition: Callable[[], object], worker: WorkerProcess, what: str) -> None:
    try:
        wait_until(condition, FOLLOW_TIMEOUT_S, what, interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.log()[-3000:]}") from None


def served_versions(port: int) -> set[str]:
    return {labels["version"] for labels, value in scrape(port).get("topicq_model_info", []) if value}


def test_an_idle_worker_follows_a_promotion_without_posts(settings: Settings, worker: WorkerProcess,
                                                         tmp_path: Path, port: int) -> None:
    # Given a worker serving topics:1 that has not been sent a post
    first = register_fake_model(settings.db_url, settings.model_dir)
    worker.start()
    heartbeat = settings.heartbeat_path
    followed(lambda: (read_heartbeat(heartbeat) or {}).get("serving") == f"topics:{first}", worker,
             "the heartbeat names the first version")

    # When topics:2 is promoted, and still no post is sent
    second = register_fake_model(settings.db_url, settings.model_dir, seed=1)

    # Then the worker loads it by itself: the heartbeat, the status and the metrics name it
    followed(lambda: (read_heartbeat(heartbeat) or {}).get("serving") == f"topics:{second}", worker,
             "the heartbeat names the promoted version")
    assert f"switching model topics:{first} -> topics:{second}" in worker.log()
    assert [s.serving for s in serving_workers(settings.redis_url)] == [f"topics:{second}"]
    assert served_versions(port) == {str(second)}

    # and the first post after the promotion is served by it
    producer = Producer(settings)
    try:
        producer.send(producer.validate("after-promotion", "a post about rockets and orbits", {}))
    finally:
        producer.close()
    assert wait_for_rows(settings.db_url, 1, timeout=60) == 1, worker.log()[-3000:]
    assert wait_for_rows(settings.db_url, 1, timeout=0, model_version=second) == 1


def test_an_idle_worker_starts_scoring_a_new_challenger_without_posts(settings: Settings,
                                                                      worker: WorkerProcess) -> None:
    # Given a worker serving topics:1 with no challenger in `staging` yet, and no post sent
    register_fake_model(settings.db_url, settings.model_dir)
    worker.start()

    # When topics:2 is put in staging
    challenger = register_fake_model(settings.db_url, settings.model_dir, seed=1, promote=False)
    registry.promote(settings.db_url, name="topics", version=challenger, alias=settings.shadow_alias)

    # Then the worker loads it for shadow scoring by itself
    followed(lambda: f"scoring topics:{challenger} in shadow ({settings.shadow_alias})" in worker.log(),
             worker, "the challenger is loaded")
