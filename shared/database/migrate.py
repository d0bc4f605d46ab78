"""The schema: Alembic migrations shipped inside the package, run in one place.

`ensure_schema` is what entry points call (the `topicq` group before a verb that
uses the database): it migrates once per process and URL. `upgrade` always runs
Alembic (`topicq migrate`, test databases) and is what creates a SQLite file and its
folder. Verbs that only read pass `create=False`: a SQLite database that is not there
is then an error, not a new empty database (a mistyped DATABASE_URL would otherwise
answer "no rows" from it).
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config

from shared.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"

_migrated: set[str] = set()
_lock = threading.Lock()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (None: another database, or SQLite in memory).
    A URL that cannot be parsed is a ConfigError naming DATABASE_URL, never showing the URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: e.g. a port that is not a number
        raise ConfigError(f"DATABASE_URL cannot be used ({str(exc).splitlines()[0]}); "
                          "use postgresql://user@host/db or sqlite:///path/to/topicq.db") from None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def missing_database(url: str) -> str | None:
    """Why a verb that only reads cannot use `url` (a SQLite file that is not there), or None."""
    path = sqlite_file(url)
    if path is None or path.exists():
        return None
    return f"no database at {path}; run a worker or `topicq migrate` first, or set DATABASE_URL"


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest schema (idempotent); creates a SQLite file's folder."""
    from shared.database.connection import database_errors, get_engine

    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    get_engine(url)  # a bad URL is a ConfigError here
    with database_errors(url):
        command.upgrade(alembic_config(url), "head")


def ensure_schema(url: str, *, create: bool = True) -> None:
    """`upgrade` the first time this process uses `url`; afterwards nothing. With `create` False,
    a SQLite database that does not exist yet is a ConfigError instead of being created."""
    if not create:
        problem = missing_database(url)
        if problem:
            raise ConfigError(problem)
    with _lock:
        if url not in _migrated:
            upgrade(url)
            _migrated.add(url)
