"""A real worker process on the real Redis and PostgreSQL.

Given a promoted model (fake embedder) and a worker, when posts are sent
through the queue, then each gets exactly one result row — also when a
message comes twice, when a malformed one is sent by name, when the worker
is SIGKILLed mid-batch, and when a new version is promoted mid-stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared.database.connection import session_scope
from shared.database.tables import Result
from shared.model import registry
from shared.settings import Settings
from shared.wire.producer import Producer
from shared.wire.protocol import CLASSIFY_CHUNK_TASK, CLASSIFY_TASK
from testkit.factories import labelled_posts, register_fake_model
from testkit.wire import raw_message
from testkit.worker_process import WorkerProcess, count_rows, wait_for_rows, worker_env

pytestmark = pytest.mark.integration


@pytest.fixture
def env(postgres_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return worker_env(postgres_url, redis_url, tmp_path)


@pytest.fixture
def model_version(settings: Settings) -> int:
    return register_fake_model(settings.db_url, settings.models_path)


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


def start_worker(env: dict[str, str], workers: list[WorkerProcess], tmp_path: Path, **extra: str) -> WorkerProcess:
    worker = WorkerProcess({**env, **extra}, tmp_path / f"worker{len(workers)}.log")
    workers.append(worker)
    return worker.start()


def send_posts(settings: Settings, posts: list[tuple[str, str, str]]) -> Producer:
    producer = Producer(settings)
    for post_id, text, label in posts:
        producer.send(producer.validate(post_id, text, {"truth": label}))
    return producer


def broker_state(settings: Settings) -> dict[str, object]:
    """What Redis still holds, for failure messages."""
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    return {"queued": client.llen(settings.queue), "unacked": client.hlen("unacked"),
            "unacked_mutex_ttl": client.ttl("unacked_mutex")}


def duplicates(db_url: str) -> int:
    with session_scope(db_url) as session:
        return int(session.scalar(select(func.count()).select_from(
            select(Result.post_id).group_by(Result.post_id).having(func.count() > 1).subquery())) or 0)


def test_500_posts_become_500_rows_and_a_resent_post_stays_one_row(
    settings: Settings, model_version: int, env: dict[str, str], workers: list, tmp_path: Path
) -> None:
    start_worker(env, workers, tmp_path)
    posts = labelled_posts(167, seed=3)[:500]
    producer = send_posts(settings, posts)
    producer.send(producer.validate(posts[0][0], posts[0][1]))  # the same post again
    assert wait_for_rows(settings.db_url, 500, timeout=120) == 500
    time.sleep(2)  # let the duplicate arrive, if it were to make a second row
    assert count_rows(settings.db_url) == 500
    assert count_rows(settings.db_url, status="done", model_version=model_version) == 500
    assert duplicates(settings.db_url) == 0
    from shared.database.results import stats

    assert stats(settings.db_url)["posts_per_embed_call"] >= 8  # batched, not one by one


def test_malformed_message_sent_by_name_is_rejected_and_its_batch_done(
    settings: Settings, model_version: int, env: dict[str, str], workers: list, tmp_path: Path
) -> None:
    start_worker(env, workers, tmp_path, BATCH_SIZE="8", BATCH_WAIT_S="2")
    producer = Producer(settings)
    good = labelled_posts(2, seed=5)[:5]
    for post_id, text, _ in good[:3]:
        producer.app.send_task(CLASSIFY_TASK, kwargs={"id": post_id, "text": text})
    producer.app.send_task(CLASSIFY_TASK, kwargs={"id": "bad-1", "text": {"nested": ["x"]}})
    producer.app.send_task(CLASSIFY_TASK, kwargs={"text": "no id"})
    producer.app.send_task(CLASSIFY_TASK, args=["only one positional"])
    for post_id, text, _ in good[3:]:
        producer.app.send_task(CLASSIFY_TASK, kwargs={"id": post_id, "text": text})
    assert wait_for_rows(settings.db_url, 6, timeout=60) == 6
    with session_scope(settings.db_url) as session:
        statuses = dict(session.execute(select(Result.post_id, Result.status)).all())
        [error] = session.scalars(select(Result.error).where(Result.post_id == "bad-1"))
    assert statuses.pop("bad-1") == "rejected" and "text: must be a string" in error
    assert statuses == {post_id: "done" for post_id, _, _ in good}
    assert workers[0].process.poll() is None  # still alive


def test_sigkill_mid_batch_loses_nothing(
    settings: Settings, model_version: int, env: dict[str, str], workers: list, tmp_path: Path
) -> None:
    # Given a slow embedder (0.3 s per call), so that a kill lands inside a batch
    slow = {"FAKE_EMBED_DELAY_S": "0.3"}
    first = start_worker(env, workers, tmp_path, **slow)
    posts = labelled_posts(100, seed=11)[:300]
    send_posts(settings, posts)
    # When the worker is SIGKILLed after some rows, with buffered and unacknowledged posts
    wait_for_rows(settings.db_url, 40, timeout=60)
    first.kill()
    written_before_restart = count_rows(settings.db_url)
    assert written_before_restart < 300
    start_worker(env, workers, tmp_path, **slow)
    # Then after redelivery every post has exactly one row
    assert wait_for_rows(settings.db_url, 300, timeout=120) == 300, broker_state(settings)
    time.sleep(1)  # nothing more may come: a redelivered post would make a second row now
    assert count_rows(settings.db_url) == 300
    assert duplicates(settings.db_url) == 0


def test_promotion_while_posts_flow_is_followed_and_recorded_per_row(
    settings: Settings, model_version: int, env: dict[str, str], workers: list, tmp_path: Path
) -> None:
    start_worker(env, workers, tmp_path, FAKE_EMBED_DELAY_S="0.05")
    second = register_fake_model(settings.db_url, settings.models_path, seed=1, promote=False)
    posts = labelled_posts(60, seed=13)
    send_posts(settings, posts[:90])
    wait_for_rows(settings.db_url, 30, timeout=60)
    registry.promote(settings.db_url, name=settings.model_name, version=second)
    time.sleep(1.5)  # longer than MODEL_REFRESH_S: the worker has moved
    send_posts(settings, posts[90:])
    assert wait_for_rows(settings.db_url, 180, timeout=90) == 180
    by_version = {
        version: count for version, count in session_counts(settings.db_url)
    }
    assert set(by_version) == {model_version, second}
    assert sum(by_version.values()) == 180 and duplicates(settings.db_url) == 0
    late_ids = [p[0] for p in posts[90:]]
    with session_scope(settings.db_url) as session:
        late_versions = set(session.scalars(select(Result.model_version).where(Result.post_id.in_(late_ids))))
    assert late_versions == {second}


def session_counts(db_url: str) -> list[tuple[int, int]]:
    with session_scope(db_url) as session:
        return [tuple(r) for r in session.execute(
            select(Result.model_version, func.count()).group_by(Result.model_version))]


def test_a_hand_built_json_message_is_classified_and_a_pickled_one_refused(
    settings: Settings, model_version: int, env: dict[str, str], workers: list, tmp_path: Path
) -> None:
    import pickle

    import redis

    worker = start_worker(env, workers, tmp_path)
    client = redis.Redis.from_url(settings.redis_url)
    client.lpush(settings.queue, raw_message(CLASSIFY_TASK, {"id": "from-node", "text": "rocket orbit"},
                                             settings.queue))
    evil = pickle.dumps(([], {"id": "pickled", "text": "rocket"}, {}))
    client.lpush(settings.queue, raw_message(CLASSIFY_TASK, {}, settings.queue,
                                             content_type="application/x-python-serialize", body=evil))
    assert wait_for_rows(settings.db_url, 1, timeout=60) == 1
    time.sleep(2)  # nothing more may come: the pickled message must never make a row
    with session_scope(settings.db_url) as session:
        assert list(session.scalars(select(Result.post_id))) == ["from-node"]
    # The pickled message waits in the dead-letter list, whole, with the reason.
    [letter] = [json.loads(e) for e in client.lrange(f"{settings.queue}.dead", 0, -1)]
    assert "only JSON is accepted" in letter["reason"] and letter["message"].startswith("{")
    assert "only JSON is accepted" in worker.log()
    assert worker.process.poll() is None


@pytest.mark.parametrize("task", [CLASSIFY_TASK, CLASSIFY_CHUNK_TASK])
def test_a_wait_longer_than_the_visibility_timeout_is_taken_in_steps_and_processed_once(
    task: str, settings: Settings, model_version: int, env: dict[str, str], workers: list, tmp_path: Path
) -> None:
    """A retry due in 2 x VISIBILITY_TIMEOUT_S (the daily-quota wait, scaled down) is passed on in steps of
    at most half the timeout, is not delivered twice meanwhile, and is processed once when due, with the
    attempt count of its header."""
    import redis

    from shared.wire.protocol import ATTEMPT_HEADER, DUE_HEADER

    start_worker(env, workers, tmp_path)
    wait_s = 2 * settings.visibility_timeout_s
    post = {"id": "later", "text": "rocket orbit"}
    kwargs = post if task == CLASSIFY_TASK else {"posts": [post]}
    message = json.loads(raw_message(task, kwargs, settings.queue))
    message["headers"].update({ATTEMPT_HEADER: 1, DUE_HEADER: time.time() + wait_s})
    client = redis.Redis.from_url(settings.redis_url)
    sent = time.time()
    client.lpush(settings.queue, json.dumps(message))

    assert wait_for_rows(settings.db_url, 1, timeout=wait_s + 30) == 1
    waited = time.time() - sent
    with session_scope(settings.db_url) as session:
        [row] = session.scalars(select(Result)).all()
    assert row.post_id == "later" and row.status == "done" and row.attempts == 2
    assert wait_s - 1 <= waited <= wait_s + 15, waited
    time.sleep(settings.visibility_timeout_s + 2)  # a copy held too long would come back now
    assert count_rows(settings.db_url) == 1 and duplicates(settings.db_url) == 0
    assert broker_state(settings)["queued"] == 0 and broker_state(settings)["unacked"] == 0
