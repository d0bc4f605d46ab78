"""The database boundary: one engine and session factory per URL and process, errors translated once.

Every query runs in `session_scope(url)` (or `transaction(db)`, which also takes a
caller's session), and nothing else turns driver exceptions into ours: connection
trouble becomes DatabaseUnavailableError there, whatever the query.

The tables are declared in shared/database/tables.py; the schema is created by
Alembic (shared/database/migrate.py), never on import.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    create_engine,
    event,
    make_url,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import ConfigError, DatabaseUnavailableError

# A URL (each use its own transaction) or a caller's session (one transaction for several steps).
Db = str | Session


def utcnow() -> datetime:
    return datetime.now(UTC)


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL + a busy timeout let a worker and the CLI use one SQLite file at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _unusable_url(url: str, reason: str) -> ConfigError:
    try:
        shown = safe_url(url)
    except ArgumentError:
        shown = "(not a URL)"
    return ConfigError(f"DATABASE_URL {shown} cannot be used ({reason}); "
                       "use postgresql://user@host/db or sqlite:///path/to/topicq.db")


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    try:
        return _create_engine(url)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise _unusable_url(url, str(exc).splitlines()[0]) from None
    except ModuleNotFoundError as exc:  # a driver that is not installed, e.g. mysql://
        raise _unusable_url(url, f"no driver {exc.name!r} installed") from None


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):  # its folder is created by shared/database/migrate.py upgrade, when asked to
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _driver_connection_errors() -> tuple[type[BaseException], ...]:
    try:
        import psycopg
    except ImportError:
        return ()
    return (psycopg.OperationalError, psycopg.InterfaceError)


# The database cannot be used right now (down, restarting, unreachable, locked, out of connections),
# as opposed to a statement or value it refuses. SQLAlchemy wraps the driver's errors; the driver's
# own classes are listed for any that reach us unwrapped.
_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError,
                *_driver_connection_errors())

# SQLSTATEs (PostgreSQL) of a database that refuses every write for a reason of its own, whatever
# the values: an outage like a lost connection (the posts wait, no retry is spent on them), never
# the post's fault. Two-character entries are whole classes. Values it refuses (class 22 data
# exceptions, class 23 integrity) are not here: those are the post's own (shared/database/results.py).
_REFUSING_STATES = {
    "25": "read-only or aborted transaction (a replica, or default_transaction_read_only)",
    "3D": "no such database",
    "3F": "no such schema",
    "40": "serialization failure or deadlock",
    "53": "out of resources (disk full, out of memory, too many connections)",
    "54": "a server limit exceeded",
    "55": "object not in the needed state (e.g. a lock timeout)",
    "57": "the server shut down or cancelled the statement; check that it is running",
    "58": "system error (I/O)",
    "XX": "internal error of the server",
    "42P01": "a table is missing: is the schema migrated (`topicq migrate`)?",
    "42703": "a column is missing: is the schema migrated (`topicq migrate`)?",
    "42883": "a function is missing: is the schema migrated (`topicq migrate`)?",
    "42501": "permission denied to the database user",
}

# SQLite's messages for the same: the file read-only, a table missing, the disk full.
_SQLITE_REFUSALS = ("readonly database", "no such table", "no such column", "disk is full",
                    "disk i/o error", "unable to open database", "database is locked")


def _sqlstate(exc: BaseException) -> str | None:
    state = getattr(getattr(exc, "orig", None) or exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def refusal(exc: BaseException) -> str | None:
    """Why the database refuses every write, when `exc` says it does (None: the statement or value)."""
    state = _sqlstate(exc)
    if state:
        return _REFUSING_STATES.get(state) or _REFUSING_STATES.get(state[:2])
    if isinstance(exc, DBAPIError):
        message = str(exc.orig).lower()
        if any(marker in message for marker in _SQLITE_REFUSALS):
            return "the database file refuses writes (read-only, locked or full) or lacks a table"
    return None


def is_unavailable(exc: BaseException) -> bool:
    """The database cannot take writes now (down, or refusing them all): an outage, not the post's fault."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    state = _sqlstate(exc)
    if state and state[:2] in ("22", "23"):  # a value it refuses: the post's fault, whatever its class
        return False
    return isinstance(exc, _UNAVAILABLE) or refusal(exc) is not None


def _first_line(exc: BaseException) -> str:
    reason = getattr(exc, "orig", None) or exc
    lines = str(reason).strip().splitlines()
    return f"{reason.__class__.__name__}: {lines[0] if lines else ''}"


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """A database that is down or refuses every write inside the block becomes DatabaseUnavailableError;
    other errors (a value it refuses, a bug) pass as they are."""
    try:
        yield
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        why = refusal(exc)
        if (_sqlstate(exc) or "").startswith("25"):
            # A session keeps the read-only default it started with: drop the pooled sessions, so the
            # first write after a failback (or a fixed setting) gets a session that can write.
            get_engine(url).dispose()
        hint = (f"the database refuses: {why}" if why
                else "check that it is running and that DATABASE_URL names it")
        raise DatabaseUnavailableError(
            f"cannot use the database at {safe_url(url)} ({_first_line(exc)}); {hint}") from exc


@lru_cache(maxsize=8)
def _session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    with database_errors(url), _session_factory(url)() as session, session.begin():
        yield session


@contextmanager
def transaction(db: Db) -> Iterator[Session]:
    """The caller's session (its transaction goes on, the caller commits) or a new one for a URL."""
    if isinstance(db, Session):
        yield db
    else:
        with session_scope(db) as session:
            yield session


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
