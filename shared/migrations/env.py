"""Alembic environment: the URL comes from the config topicq builds (shared.migrate)."""

from alembic import context
from sqlalchemy import pool

import shared.corrections  # noqa: F401 - its table joins Base.metadata
import shared.drift_sums  # noqa: F401 - its table joins Base.metadata
import shared.results  # noqa: F401 - its table joins Base.metadata
from shared.db import Base, get_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or ""


def run_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = get_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata,
                          render_as_batch=url.startswith("sqlite"))
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

_ = pool  # keeps the import alembic templates expect
