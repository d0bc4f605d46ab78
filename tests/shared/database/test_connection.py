"""The database boundary: connection trouble is DatabaseUnavailableError, from one place; the schema
is migrated once per process."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.exc import DataError, IntegrityError

from cli.main import main
from shared.database.connection import get_engine, session_scope
from shared.database.migrate import ensure_schema
from shared.database.results import ResultRow, Status, write_rows
from shared.database.tables import ModelVersion
from shared.errors import DatabaseUnavailableError
from shared.model import embedding_cache as cache
from shared.model import registry
from testkit.databases import ADMIN_URL as PG_ADMIN_URL

UNREACHABLE = "postgresql+psycopg://topicq:hunter2@127.0.0.1:1/topicq?connect_timeout=2"


@pytest.mark.integration
def test_a_database_that_goes_away_mid_session_is_unavailable(postgres_url: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with pytest.raises(DatabaseUnavailableError, match="check that it is running"), \
                session_scope(postgres_url) as session:
            session.scalar(select(ModelVersion.name).limit(1))  # the session holds a live connection
            pid = session.scalar(text("SELECT pg_backend_pid()"))
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            session.scalar(select(ModelVersion.name).limit(1))
    finally:
        admin.dispose()
    assert registry.list_versions(postgres_url) == []  # the pool recovers by itself


@pytest.mark.parametrize("call", [
    lambda url: registry.resolve(url, name="topics"),
    lambda url: cache.lookup(url, "fake:bow:64", ["digest"]),
    lambda url: write_rows(url, [ResultRow(post_id="p", model_name="m", model_version=1, status=Status.DONE)]),
    ensure_schema,
], ids=["registry", "cache", "results", "migrations"])
def test_an_unreachable_database_is_unavailable_with_the_password_masked(call) -> None:
    with pytest.raises(DatabaseUnavailableError) as caught:
        call(UNREACHABLE)
    assert "topicq:***@127.0.0.1:1/topicq" in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.integration
def test_a_statement_the_database_refuses_is_not_an_outage(postgres_url: str) -> None:
    with pytest.raises(DataError), session_scope(postgres_url) as session:
        session.execute(text("SELECT 1 / 0"))
    with pytest.raises(IntegrityError), session_scope(postgres_url) as session:
        session.execute(text("INSERT INTO model_aliases (name, alias, version, history, updated_at) "
                             "VALUES ('none', 'production', 1, '{}', now())"))


def test_the_schema_is_migrated_once_per_process(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'once.db'}"
    ensure_schema(url)
    statements: list[str] = []
    event.listen(get_engine(url), "before_cursor_execute", lambda *args: statements.append(args[2]))
    ensure_schema(url)
    assert statements == []
    assert registry.list_versions(url) == []


def test_verbs_that_use_the_database_migrate_it_first_and_help_needs_none(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)
    assert CliRunner().invoke(main, ["stats", "--help"]).exit_code == 0
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    (tmp_path / "fresh.db").touch()  # there, but empty: read-only verbs refuse only a missing database
    result = CliRunner().invoke(main, ["results"])
    assert result.exit_code == 0 and result.stderr == "no rows match\n", result.output
