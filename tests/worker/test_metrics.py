"""What the tasks record, through Celery itself (memory broker, fake embedder, SQLite; no Redis),
and the send stamp's check in the envelope."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

import pytest
from celery import Celery

from shared.model.embedders.fake import FakeEmbedder
from shared.settings import Settings
from shared.wire.envelope import inspect
from shared.wire.protocol import CLASSIFY_CHUNK_TASK, CLASSIFY_TASK, SENT_AT_HEADER, TASKS
from testkit.factories import labelled_posts
from testkit.failing_embedders import FlakyEmbedder
from testkit.waiting import wait_until
from testkit.wire import envelope
from testkit.worker_process import wait_for_rows
from worker import metrics


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("task", [CLASSIFY_TASK, CLASSIFY_CHUNK_TASK])
def test_a_retried_post_keeps_its_send_time_and_each_outcome_is_counted_once(
        task: str, settings: Settings, run_worker: Callable[[FakeEmbedder], Celery],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_enabled", True)
    before = {name: value(name) for name in ("topicq_end_to_end_seconds_count", "topicq_end_to_end_seconds_sum")}
    version = str(settings.model_name), "1"
    done_before = value("topicq_posts_total", status="done", model_name=version[0], model_version=version[1])
    retried_before = value("topicq_retries_total", reason="transient")
    app = run_worker(FlakyEmbedder(failures=1))  # the first batch fails: its posts go round once
    posts = [{"id": f"stamped-{i}", "text": text} for i, (_, text, _) in enumerate(labelled_posts(1))]
    sent_at = time.time() - 100  # sent 100 s ago
    if task == CLASSIFY_TASK:
        for post in posts:
            app.send_task(task, kwargs=post, queue=settings.queue, headers={SENT_AT_HEADER: sent_at})
    else:
        app.send_task(task, kwargs={"posts": posts}, queue=settings.queue, headers={SENT_AT_HEADER: sent_at})

    assert wait_for_rows(settings.db_url, len(posts), timeout=60, status="done") == len(posts)
    wait_until(lambda: value("topicq_end_to_end_seconds_count") - before["topicq_end_to_end_seconds_count"] >= len(posts),
               10, "the counts, which follow the commit")
    observed = value("topicq_end_to_end_seconds_count") - before["topicq_end_to_end_seconds_count"]
    latency = value("topicq_end_to_end_seconds_sum") - before["topicq_end_to_end_seconds_sum"]
    assert observed == len(posts)
    assert 100 * len(posts) <= latency < 160 * len(posts)  # from the first send, not the retry
    assert value("topicq_posts_total", status="done", model_name=version[0],
                 model_version=version[1]) - done_before == len(posts)
    assert value("topicq_retries_total", reason="transient") - retried_before == len(posts)


@pytest.mark.parametrize("stamp", ["yesterday", -1, 1e12, True, [1], math.nan])
def test_a_bad_send_stamp_is_removed_not_refused(stamp: object) -> None:
    message = envelope(CLASSIFY_TASK, kwargs={"id": "p", "text": "rocket"})
    message["headers"][SENT_AT_HEADER] = stamp
    checked = inspect(json.dumps(message), tasks=TASKS)
    assert checked.bad_stamp and SENT_AT_HEADER not in checked.message["headers"]
    assert checked.post_ids == ["p"]


def test_a_good_send_stamp_is_kept() -> None:
    message = envelope(CLASSIFY_TASK, kwargs={"id": "p", "text": "rocket"})
    message["headers"][SENT_AT_HEADER] = stamp = round(time.time() - 3600, 2)
    checked = inspect(json.dumps(message), tasks=TASKS)
    assert not checked.bad_stamp and checked.message["headers"][SENT_AT_HEADER] == stamp
