"""The schema: Alembic migrations shipped inside the package, run in one place.

`ensure_schema` is what entry points call (the `topicq` group before a verb that
uses the database): it migrates once per process and URL. `upgrade` always runs
Alembic (`topicq migrate`, test databases).
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"

_migrated: set[str] = set()
_lock = threading.Lock()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest schema (idempotent)."""
    from shared.db import database_errors, get_engine

    get_engine(url)  # creates the SQLite file's folder; a bad URL is a ConfigError here
    with database_errors(url):
        command.upgrade(alembic_config(url), "head")


def ensure_schema(url: str) -> None:
    """`upgrade` the first time this process uses `url`; afterwards nothing."""
    with _lock:
        if url not in _migrated:
            upgrade(url)
            _migrated.add(url)
