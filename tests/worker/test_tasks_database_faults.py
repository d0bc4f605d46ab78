"""A database that refuses writes holds the posts (no attempt spent) and says so in health and metrics.

The batch function of the tasks (`_run`) on a real database, a real model and the fake embedder:
the database made read-only as a replica is after a failover, then writable again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import make_url

from cli.health import check_database, check_writes
from shared.database.connection import get_engine
from shared.database.results import query_results
from shared.model.embedders.base import EmbedOutcome
from shared.model.embedders.fake import FakeEmbedder
from shared.settings import Settings
from testkit.databases import admin_sql
from testkit.factories import labelled_posts, register_fake_model
from worker import heartbeat, metrics, worker_state
from worker.heartbeat import Heartbeat
from worker.tasks import _run


def _read_only(url: str, on: bool) -> None:
    admin_sql(f'ALTER DATABASE "{make_url(url).database}" SET default_transaction_read_only = '
           f'{"on" if on else "off"}')
    get_engine(url).dispose()  # new sessions take the setting, as after a failover


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def make(db_url: str, embedder: FakeEmbedder | None = None) -> Settings:
        settings = Settings(database_url=db_url, model_dir=tmp_path / "models", embedder="fake",
                            max_retries=3, retry_base_s=0.01, retry_max_s=0.05, model_refresh_s=0,
                            redis_url="memory://", heartbeat_file=str(tmp_path / "beat.json"))
        register_fake_model(db_url, settings.models_path)
        monkeypatch.setattr(worker_state, "_state", worker_state.build_worker_state(settings, embedder or FakeEmbedder()))
        monkeypatch.setattr(heartbeat, "DATABASE_WRITES", heartbeat.WriteOutcome())
        return settings

    return make


def test_a_read_only_database_holds_the_posts_and_health_says_why(
        postgres_url: str, served, tmp_path: Path) -> None:
    settings = served(postgres_url)
    metrics.enable()
    posts = [{"id": post_id, "text": body} for post_id, body, _ in labelled_posts(2, seed=3)]
    _read_only(postgres_url, True)
    try:
        report = _run(posts, [0] * len(posts), settings)
        # Nothing written, every post goes round again, and the outage spent none of their attempts.
        assert report.written == [] and report.retry_reason == "database_unavailable"
        assert sorted(p.id for p in report.retry) == sorted(p["id"] for p in posts)
        assert {p.attempt for p in report.retry} == {0}
        # The worker says it cannot write: heartbeat -> `topicq health`, and the gauge.
        beat = Heartbeat(settings.heartbeat_path, worker="w", queue="q", embedder=lambda: "fake",
                         serving=lambda: "topics:1")
        beat.beat()
        writes = check_writes(settings.heartbeat_path)
        assert not writes.ok and "read-only" in writes.detail, writes.line()
        assert metrics.DATABASE_WRITABLE._value.get() == 0
        database = check_database(postgres_url)
        assert not database.ok and "read-only" in database.detail, database.line()
    finally:
        _read_only(postgres_url, False)
    again = _run([p.to_message() for p in report.retry], [p.attempt for p in report.retry], settings)
    assert {row.status for row in again.written} == {"done"} and len(again.written) == len(posts)
    assert {r["attempts"] for r in query_results(postgres_url)} == {1}
    Heartbeat(settings.heartbeat_path, worker="w", queue="q", embedder=lambda: "fake",
              serving=lambda: "topics:1").beat()
    assert check_writes(settings.heartbeat_path).ok
    assert metrics.DATABASE_WRITABLE._value.get() == 1


def test_a_renamed_results_table_holds_the_posts_until_it_is_back(postgres_url: str, served) -> None:
    settings = served(postgres_url)
    posts = [{"id": post_id, "text": body} for post_id, body, _ in labelled_posts(1, seed=4)]
    with get_engine(postgres_url).begin() as conn:
        conn.exec_driver_sql("ALTER TABLE results RENAME TO results_away")
    report = _run(posts, [2] * len(posts), settings)  # the last attempt: still not spent on the outage
    assert report.written == [] and {p.attempt for p in report.retry} == {2}
    with get_engine(postgres_url).begin() as conn:
        conn.exec_driver_sql("ALTER TABLE results_away RENAME TO results")
    again = _run([p.to_message() for p in report.retry], [p.attempt for p in report.retry], settings)
    assert len(again.written) == len(posts) and {r.status for r in again.written} == {"done"}


class BuggyEmbedder(FakeEmbedder):
    """An embedder with a bug: an error no policy knows."""

    def embed_each(self, texts: list[str]) -> EmbedOutcome:
        raise RuntimeError("a bug")


def test_a_post_that_keeps_hitting_a_bug_ends_failed_never_dropped(sqlite_url: str, served) -> None:
    settings = served(sqlite_url, BuggyEmbedder())
    report = _run([{"id": "unlucky", "text": "orbit rocket"}], [settings.max_retries - 1], settings)
    assert report.retry == []
    rows = query_results(sqlite_url)
    assert [(r["post_id"], r["status"]) for r in rows] == [("unlucky", "failed")]
    assert "a bug" in rows[0]["error"]


def test_a_repeat_of_a_done_id_is_counted_apart_not_as_done(sqlite_url: str, served) -> None:
    settings = served(sqlite_url)
    metrics.enable()
    before = metrics.REPEATED_IDS._value.get()
    first = _run([{"id": "same", "text": "orbit rocket launch"}], [0], settings)
    later = _run([{"id": "same", "text": "doctor patient clinic"}], [0], settings)
    assert [row.status for row in first.written] == ["done"] and later.written == []
    assert metrics.REPEATED_IDS._value.get() == before + 1
    assert [r["label"] for r in query_results(sqlite_url)] == [first.written[0].label]


def test_a_starting_worker_waits_for_its_database_and_says_why(tmp_path: Path, caplog) -> None:
    from cli.health import check_worker
    from shared.errors import DatabaseUnavailableError
    from worker.worker_state import wait_for_database

    path = tmp_path / "beat.json"
    outcomes: list[object] = [DatabaseUnavailableError("cannot use the database at x (refused)")] * 3 + ["ready"]
    slept: list[float] = []
    seen: list[str] = []

    def load() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        seen.append(check_worker(path, 60).line())

    beat = Heartbeat(path, worker="w", queue="q", embedder=lambda: None)
    with caplog.at_level("INFO", logger="worker.worker_state"):
        assert wait_for_database(load, heartbeat=beat, first_s=1, max_s=3, sleep=sleep) == "ready"
    assert slept == [1, 2, 3]
    assert all(line.startswith("FAIL") and "waiting for the database" in line and "refused" in line
               for line in seen)
    assert sum("waiting for the database" in r.getMessage() for r in caplog.records) == 1
    assert not path.exists()  # the running worker's own heartbeat takes over
