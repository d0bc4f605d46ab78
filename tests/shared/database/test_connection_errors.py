"""A database that refuses writes for any reason of its own is an outage, not the post's fault.

Read-only (a replica after failover), a table renamed away, a missing catalog, permissions,
disk full, lock timeouts...: the boundary (shared/database/connection.py) turns them into
DatabaseUnavailableError, so the worker holds the posts and writes them once it recovers.
Values the database refuses (DataError, an integrity error) stay the post's own fault.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url
from sqlalchemy.exc import DataError, IntegrityError, InternalError, OperationalError, ProgrammingError

from shared.database.connection import database_errors, get_engine, is_unavailable
from shared.database.migrate import upgrade
from shared.database.results import ResultRow, Status, query_results, write_rows
from shared.errors import DatabaseUnavailableError
from testkit.databases import admin_sql


def _wrapped(sqlstate: str, wrapper: type = ProgrammingError) -> Exception:
    """A driver error of `sqlstate` as SQLAlchemy hands it over (the driver's own class for it)."""
    orig = psycopg.errors.lookup(sqlstate)("refused")
    return wrapper("INSERT INTO results ...", {}, orig)


@pytest.mark.parametrize("sqlstate, wrapper", [
    ("25006", InternalError),  # read-only transaction
    ("42P01", ProgrammingError),  # undefined table
    ("42703", ProgrammingError),  # undefined column
    ("42501", ProgrammingError),  # permission denied
    ("53100", OperationalError),  # disk full
    ("57P01", OperationalError),  # admin shutdown
    ("55P03", OperationalError),  # lock not available
    ("40001", OperationalError),  # serialization failure
    ("40P01", OperationalError),  # deadlock
    ("3D000", OperationalError),  # no such database
])
def test_refusals_of_the_database_itself_are_outages(sqlstate: str, wrapper: type) -> None:
    assert is_unavailable(_wrapped(sqlstate, wrapper))


@pytest.mark.parametrize("sqlstate, wrapper", [
    ("22P05", DataError),  # untranslatable character: the post's value
    ("22003", DataError),  # numeric out of range
    ("23505", IntegrityError),  # unique violation
])
def test_refusals_of_a_value_stay_the_posts_fault(sqlstate: str, wrapper: type) -> None:
    assert not is_unavailable(_wrapped(sqlstate, wrapper))


def _row(post_id: str) -> ResultRow:
    return ResultRow(post_id=post_id, model_name="topics", model_version=1, status=Status.DONE, label="a")


def test_a_read_only_postgres_is_an_outage_and_writes_resume_after_it(postgres_url: str) -> None:
    name = make_url(postgres_url).database
    admin_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    get_engine(postgres_url).dispose()  # new sessions take the setting, as after a failover
    try:
        with pytest.raises(DatabaseUnavailableError, match="read-only"):
            write_rows(postgres_url, [_row("p-1")])
    finally:
        admin_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
    # No pooled session kept the read-only default: the refusal dropped them.
    write_rows(postgres_url, [_row("p-1")])
    assert [r["post_id"] for r in query_results(postgres_url)] == ["p-1"]


def test_a_missing_results_table_is_an_outage(postgres_url: str) -> None:
    with get_engine(postgres_url).begin() as conn:
        conn.exec_driver_sql("ALTER TABLE results RENAME TO results_away")
    with pytest.raises(DatabaseUnavailableError, match="results"):
        write_rows(postgres_url, [_row("p-1")])
    with get_engine(postgres_url).begin() as conn:
        conn.exec_driver_sql("ALTER TABLE results_away RENAME TO results")
    write_rows(postgres_url, [_row("p-1")])
    assert len(query_results(postgres_url)) == 1


def test_a_missing_database_is_an_outage(postgres_url: str) -> None:
    missing = make_url(postgres_url).set(database="topicq_no_such_db").render_as_string(hide_password=False)
    with pytest.raises(DatabaseUnavailableError):
        write_rows(missing, [_row("p-1")])


def test_a_read_only_sqlite_file_is_an_outage(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    get_engine(url).dispose()
    ro_url = f"sqlite:///file:{path}?mode=ro&uri=true"
    with pytest.raises(DatabaseUnavailableError):
        write_rows(ro_url, [_row("p-1")])


def test_the_message_masks_the_password() -> None:
    url = "postgresql+psycopg://user:s3cret@127.0.0.1:1/x"
    with pytest.raises(DatabaseUnavailableError) as caught, database_errors(url):
        raise _wrapped("25006", InternalError)
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)


def test_sqlite_errors_stay_sorted_as_before() -> None:
    assert is_unavailable(OperationalError("x", {}, sqlite3.OperationalError("attempt to write a readonly database")))
    assert not is_unavailable(IntegrityError("x", {}, sqlite3.IntegrityError("UNIQUE constraint failed")))
