"""Run the Alembic migrations shipped inside the package (`topicq migrate`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest schema (idempotent)."""
    from shared.db import get_engine

    get_engine(url)  # creates the SQLite file's folder
    command.upgrade(alembic_config(url), "head")


def migrated_db_url() -> str:
    """DATABASE_URL, its schema brought up to date first (idempotent and quick)."""
    from shared.settings import get_settings

    url = get_settings().db_url
    upgrade(url)
    return url
