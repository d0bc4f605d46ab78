"""Workers and the migrate Job start together: concurrent migrations of one empty PostgreSQL."""

from __future__ import annotations

import multiprocessing
import time

import pytest
from sqlalchemy import create_engine, text

from testkit.databases import ADMIN_URL, throwaway_database


def _upgrade(url: str, start_at: float) -> str | None:
    from shared.database.connection import get_engine
    from shared.database.migrate import upgrade

    get_engine(url)  # everything imported and connected beforehand: the migrations start together
    time.sleep(max(0.0, start_at - time.time()))
    try:
        upgrade(url)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


@pytest.mark.integration
def test_three_migrations_at_once_on_an_empty_database_all_succeed(postgres_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    errors: list[str | None] = []
    with context.Pool(3) as pool:
        for _ in range(4):  # the race hit about one round in three
            with throwaway_database(ADMIN_URL, "topicq_migrate") as url:
                start_at = time.time() + 1.5
                errors += pool.starmap(_upgrade, [(url, start_at)] * 3)
                engine = create_engine(url)
                with engine.connect() as conn:
                    assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
                engine.dispose()
    assert [e for e in errors if e] == []
