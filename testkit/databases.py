"""Throw-away PostgreSQL databases for tests, drills and benchmarks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

# The PostgreSQL server (and a database on it to connect to) where throw-away databases are made.
ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class DatabaseUnreachable(ConnectionError):
    """The PostgreSQL server that would hold the throw-away database does not answer."""


def admin_sql(*statements: str, admin_url: str = ADMIN_URL) -> None:
    """Run statements on the server outside a transaction (ALTER DATABASE, pg_terminate_backend, ...)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


@contextmanager
def throwaway_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new database with topicq's schema on the server of `admin_url`, dropped (FORCE) on exit."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from shared.database.connection import get_engine
    from shared.database.migrate import upgrade

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to create it means the server is not usable
        admin.dispose()
        where = make_url(admin_url).render_as_string(hide_password=True)
        raise DatabaseUnreachable(f"PostgreSQL at {where} is not reachable: {exc}") from None
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
