"""A dead letter's `rejected` rows survive a database that cannot take them when the letter is made.

The transport's hook (`record_rejected(post_ids, reason)`) keeps them in `<queue>.dead.pending`
(Redis) and the worker writes them once the database takes writes again; nothing raises into
the transport, and nothing is lost when the worker restarts in between (the list is in Redis).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, make_url, text

from shared.database.connection import get_engine
from shared.database.results import query_results
from shared.model.embedders.fake import FakeEmbedder
from shared.settings import Settings, get_settings
from testkit.databases import ADMIN_URL
from testkit.factories import register_fake_model
from worker import rejected_posts, worker_state


def _read_only(url: str, on: bool) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{make_url(url).database}" SET default_transaction_read_only = '
                              f'{"on" if on else "off"}'))
    finally:
        admin.dispose()
    get_engine(url).dispose()


@pytest.fixture
def worker_settings(postgres_url: str, redis_url: str, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Settings:
    env = {"DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "EMBEDDER": "fake",
           "MODEL_DIR": str(tmp_path / "models"), "QUEUE": "pending-test", "MODEL_REFRESH_S": "0"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    settings = get_settings()
    register_fake_model(postgres_url, settings.models_path)
    monkeypatch.setattr(worker_state, "_state", worker_state.build_worker_state(settings, FakeEmbedder()))
    return settings


def test_rejected_rows_wait_in_redis_for_the_database_and_are_written_once_it_is_back(
        worker_settings: Settings) -> None:
    url, queue = worker_settings.db_url, worker_settings.queue
    client = redis.Redis.from_url(worker_settings.redis_url)
    _read_only(url, True)
    try:
        rejected_posts.record_rejected(["lost-1", "lost-2"], "unknown task 'topicq.nosuch'")  # never raises
        pending = client.lrange(rejected_posts.pending_key(queue), 0, -1)
        assert [json.loads(entry)["post_ids"] for entry in pending] == [["lost-1", "lost-2"]]
        # Still down: a retry writes nothing and keeps the entry.
        assert rejected_posts.flush_pending(client, queue) == 0
        assert client.llen(rejected_posts.pending_key(queue)) == 1
    finally:
        _read_only(url, False)
    assert query_results(url) == []
    assert rejected_posts.flush_pending(client, queue) == 2
    rows = {r["post_id"]: r for r in query_results(url)}
    assert {pid: r["status"] for pid, r in rows.items()} == {"lost-1": "rejected", "lost-2": "rejected"}
    assert "topicq.nosuch" in rows["lost-1"]["error"]
    assert client.llen(rejected_posts.pending_key(queue)) == 0
