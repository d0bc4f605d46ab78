"""`topicq retry-failed`: posts go to the queue of their model's workers, and no post is left without a row."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from click.testing import CliRunner, Result
from sqlalchemy import select

from cli.main import main
from shared.database.connection import session_scope
from shared.database.results import DONE, FAILED, ResultRow, write_rows
from shared.database.tables import Result as Row
from worker.presence import Presence, WorkerPresence

pytestmark = pytest.mark.integration
FAILED_AT = datetime.now(UTC) - timedelta(minutes=5)


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def fail(db_url: str, post_id: str, version: int = 0, model: str = "gq") -> None:
    write_rows(db_url, [ResultRow(post_id=post_id, model_name=model, model_version=version, status=FAILED,
                                  error="gave up", text=f"text of {post_id}", processed_at=FAILED_AT)])


def rows(db_url: str) -> list[tuple[str, str, int, str]]:
    with session_scope(db_url) as session:
        return sorted(session.execute(select(Row.post_id, Row.model_name, Row.model_version, Row.status)).all())


def queued(redis_url: str, queue: str) -> list[tuple[str, str]]:
    raw = redis.Redis.from_url(redis_url).lrange(queue, 0, -1)
    return sorted((kwargs["id"], kwargs["text"])
                  for _, kwargs, _ in (json.loads(base64.b64decode(json.loads(m)["body"])) for m in raw))


@pytest.fixture
def env(sqlite_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    return sqlite_url


def test_another_model_than_model_name_is_refused_and_its_row_kept(env: str, redis_url: str) -> None:
    fail(env, "p1")
    result = topicq("retry-failed", "--model", "gq")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "queue 'topicq'" in result.stderr and "MODEL_NAME=gq" in result.stderr and "QUEUE=" in result.stderr
    assert rows(env) == [("p1", "gq", 0, FAILED)]
    assert queued(redis_url, "topicq") == []


def test_failed_rows_stay_until_a_newer_row_replaces_them(
    env: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = f"gq-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MODEL_NAME", "gq")
    monkeypatch.setenv("QUEUE", queue)
    fail(env, "p1")
    first = topicq("retry-failed", "--model", "gq")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith(f"sent 1 failed posts of gq again to queue {queue!r}")
    assert queued(redis_url, queue) == [("p1", "text of p1")]
    assert rows(env) == [("p1", "gq", 0, FAILED)]  # the post keeps a row while its retry is queued

    write_rows(env, [ResultRow(post_id="p1", model_name="gq", model_version=1, status=DONE, label="space")])
    second = topicq("retry-failed")
    assert second.stdout.startswith(f"sent 0 failed posts of gq again to queue {queue!r}")
    assert "1 failed rows already replaced by newer rows were removed" in second.stdout
    assert rows(env) == [("p1", "gq", 1, DONE)]


def test_name_version_selects_that_version_s_failed_rows(
    env: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_NAME", "gq")
    monkeypatch.setenv("QUEUE", "gq-versions")
    fail(env, "p0", version=0)
    fail(env, "p2", version=2)
    result = topicq("retry-failed", "--model", "gq:2")
    assert result.stdout.startswith("sent 1 failed posts of gq:2 again")
    assert queued(redis_url, "gq-versions") == [("p2", "text of p2")]
    assert topicq("retry-failed", "--model", "gq:x").exit_code == 2


def test_a_queue_whose_workers_serve_another_model_is_refused(
    env: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_NAME", "gq")  # QUEUE left at its default, where a topics worker listens
    Presence(redis_url, "topicq", worker="w1").record(WorkerPresence(serving="topics:1"))
    fail(env, "p1")
    result = topicq("retry-failed")
    assert result.exit_code == 2
    assert "queue 'topicq' is served by workers of another model (worker w1" in result.stderr
    assert queued(redis_url, "topicq") == [] and rows(env) == [("p1", "gq", 0, FAILED)]
