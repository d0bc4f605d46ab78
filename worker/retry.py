"""Posts recorded `failed`, for `topicq retry-failed`.

A failed row is deleted only once a newer row of the same post and model exists:
the row a retry writes replaces it by itself when it has the same model version
(the upsert), and is newer than it otherwise (e.g. failed under version 0, when
no model could be loaded). Sending a post again therefore never loses its row.
"""

from __future__ import annotations

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import aliased

from shared.db import Result, session_scope
from worker.rows import FAILED


def drop_replaced_failed_rows(db_url: str, *, model_name: str) -> int:
    """Delete `model_name`'s failed rows that a newer row of the same post has replaced; returns how many."""
    newer = aliased(Result)
    replaced = exists().where(newer.post_id == Result.post_id, newer.model_name == Result.model_name,
                              newer.model_version != Result.model_version,
                              newer.processed_at >= Result.processed_at)
    with session_scope(db_url) as session:
        result = session.execute(
            delete(Result).where(Result.status == FAILED, Result.model_name == model_name, replaced)
            .execution_options(synchronize_session=False))
        return int(getattr(result, "rowcount", 0) or 0)


def failed_rows(db_url: str, *, model_name: str, model_version: int | None = None,
                limit: int | None = None) -> list[Result]:
    query = select(Result).where(Result.status == FAILED, Result.model_name == model_name).order_by(Result.id)
    if model_version is not None:
        query = query.where(Result.model_version == model_version)
    with session_scope(db_url) as session:
        return list(session.scalars(query.limit(limit) if limit else query))
