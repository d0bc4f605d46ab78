"""Alembic environment: the URL comes from the config topicq builds (shared.database.migrate)."""

from alembic import context
from sqlalchemy import pool

from shared.database.connection import get_engine
from shared.database.tables import Base

# pg_advisory_xact_lock key: "topicq" as a number, so unrelated advisory locks never collide with it.
MIGRATION_LOCK = int.from_bytes(b"topicq", "big")
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
            if connection.dialect.name == "postgresql":
                # One migration at a time per database (workers and the migrate Job start together):
                # the others wait here, then find the schema current. Released at commit.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

_ = pool  # keeps the import alembic templates expect
