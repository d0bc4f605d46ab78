"""`topicq migrate`: create or upgrade the database schema."""

from __future__ import annotations

import click

from shared.database.connection import safe_url
from shared.database.migrate import upgrade
from shared.settings import get_settings


@click.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic `upgrade head`).

    \b
    Example:
      DATABASE_URL=postgresql+psycopg://localhost/test topicq migrate
    """
    url = get_settings().db_url
    upgrade(url)
    click.echo(f"database schema up to date: {safe_url(url)}")
