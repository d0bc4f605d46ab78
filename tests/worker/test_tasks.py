"""The two Celery tasks in an embedded worker: in-memory broker, fake embedder, SQLite; no Redis.

The messages go through Celery itself (kombu's `memory://` transport, celery-batches'
buffer, our task functions), so this checks what the pipeline tests cannot: payload
decoding from the call, the attempt header, and retries sent again as new messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery

from shared.database.results import query_results
from shared.model.embedders.fake import FakeEmbedder
from shared.settings import Settings
from shared.wire.celery_config import celery_config
from shared.wire.protocol import ATTEMPT_HEADER, CLASSIFY_CHUNK_TASK, CLASSIFY_TASK
from testkit.factories import labelled_posts
from testkit.failing_embedders import FlakyEmbedder
from testkit.worker_process import wait_for_rows


def rows_by_id(db_url: str) -> dict[str, dict[str, Any]]:
    return {row["post_id"]: row for row in query_results(db_url, limit=0)}


def test_celery_config_keeps_our_redis_transport_off_other_brokers() -> None:
    assert celery_config(Settings(redis_url="memory://"))["broker_transport"] is None
    redis_settings = Settings(redis_url="redis://127.0.0.1:6379/0")
    assert celery_config(redis_settings)["broker_transport"] == "shared.wire.transport:Transport"


def test_single_posts_and_a_chunk_are_decoded_classified_and_written(
        settings: Settings, run_worker: Callable[[FakeEmbedder], Celery]) -> None:
    app = run_worker(FakeEmbedder())
    posts = labelled_posts(3, seed=7)
    singles, chunk = posts[:5], posts[5:]
    for post_id, text, _ in singles:
        app.send_task(CLASSIFY_TASK, kwargs={"id": post_id, "text": text, "metadata": {"via": "single"}},
                      queue=settings.queue)
    app.send_task(CLASSIFY_TASK, kwargs={"id": "no-text"}, queue=settings.queue)
    app.send_task(CLASSIFY_CHUNK_TASK, kwargs={"posts": [{"id": i, "text": t} for i, t, _ in chunk]},
                  queue=settings.queue)

    assert wait_for_rows(settings.db_url, len(posts) + 1, timeout=60) == len(posts) + 1
    rows = rows_by_id(settings.db_url)
    assert {post_id: rows[post_id]["label"] for post_id, _, _ in posts} == {p[0]: p[2] for p in posts}
    assert all(rows[post_id]["attempts"] == 1 for post_id, _, _ in posts)
    assert rows[singles[0][0]]["metadata"] == {"via": "single"}
    assert rows["no-text"]["status"] == "rejected" and "text" in rows["no-text"]["error"]


def test_the_attempt_header_counts_earlier_deliveries(
        settings: Settings, run_worker: Callable[[FakeEmbedder], Celery]) -> None:
    app = run_worker(FakeEmbedder())
    app.send_task(CLASSIFY_TASK, kwargs={"id": "seen-twice", "text": "orbit rocket launch"},
                  queue=settings.queue, headers={ATTEMPT_HEADER: 2})
    app.send_task(CLASSIFY_CHUNK_TASK, kwargs={"posts": [{"id": "chunk-seen-once", "text": "doctor patient"}]},
                  queue=settings.queue, headers={ATTEMPT_HEADER: 1})

    assert wait_for_rows(settings.db_url, 2, timeout=60) == 2
    rows = rows_by_id(settings.db_url)
    assert rows["seen-twice"]["attempts"] == 3
    assert rows["chunk-seen-once"]["attempts"] == 2


@pytest.mark.parametrize("task", [CLASSIFY_TASK, CLASSIFY_CHUNK_TASK])
def test_a_transient_failure_sends_the_posts_again_until_done(
        task: str, settings: Settings, run_worker: Callable[[FakeEmbedder], Celery]) -> None:
    embedder = FlakyEmbedder(failures=1)
    app = run_worker(embedder)
    posts = [{"id": f"retried-{i}", "text": text} for i, (_, text, _) in enumerate(labelled_posts(1))]
    if task == CLASSIFY_TASK:
        for post in posts:
            app.send_task(task, kwargs=post, queue=settings.queue)
    else:
        app.send_task(task, kwargs={"posts": posts}, queue=settings.queue)

    assert wait_for_rows(settings.db_url, len(posts), timeout=60, status="done") == len(posts)
    assert embedder.failures == 0 and embedder.calls  # failed once, then embedded
    assert {row["attempts"] for row in rows_by_id(settings.db_url).values()} == {2}


def test_a_post_that_keeps_failing_is_recorded_failed_after_max_retries(
        settings: Settings, run_worker: Callable[[FakeEmbedder], Celery]) -> None:
    app = run_worker(FlakyEmbedder(failures=1_000))
    app.send_task(CLASSIFY_TASK, kwargs={"id": "doomed", "text": "cipher key escrow"}, queue=settings.queue)

    assert wait_for_rows(settings.db_url, 1, timeout=60) == 1
    time.sleep(0.5)  # nothing more may come: the post is not sent again once failed
    row = rows_by_id(settings.db_url)["doomed"]
    assert (row["status"], row["attempts"]) == ("failed", settings.max_retries)
    assert "503" in row["error"]


def test_a_chunk_larger_than_the_bound_is_split_before_any_work(
        settings: Settings, run_worker: Callable[[FakeEmbedder], Celery]) -> None:
    settings.max_chunk_posts = 8
    embedder = FakeEmbedder()
    app = run_worker(embedder)
    posts = [{"id": f"big-{i}", "text": f"orbit rocket launch number {i}"} for i in range(30)]
    app.send_task(CLASSIFY_CHUNK_TASK, kwargs={"posts": posts}, queue=settings.queue)

    assert wait_for_rows(settings.db_url, 30, timeout=60, status="done") == 30
    assert embedder.calls and max(embedder.calls) <= 8 and sum(embedder.calls) == 30
