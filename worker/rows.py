"""Writing result rows: one per (post_id, model_name, model_version), idempotently.

A redelivered message overwrites its own row instead of adding one, and a
`done` row is never overwritten by a later `failed` or `rejected` attempt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from shared.db import Result, session_scope, utcnow
from shared.errors import TransientError

DONE, REJECTED, FAILED = "done", "rejected", "failed"
_UPDATABLE = ("status", "label", "score", "scores", "embedder_id", "error", "attempts",
              "metadata", "text", "received_at", "processed_at", "batch_id")


@dataclass
class ResultRow:
    post_id: str
    model_name: str
    model_version: int
    status: str
    label: str | None = None
    score: float | None = None
    scores: dict[str, float] | None = None
    embedder_id: str | None = None
    error: str | None = None
    attempts: int = 1
    metadata: dict[str, Any] | None = None
    text: str | None = None  # kept for `failed` rows only, so retry-failed can resend
    received_at: datetime | None = None
    processed_at: datetime = field(default_factory=utcnow)
    batch_id: str | None = None


def write_rows(db_url: str, rows: list[ResultRow]) -> None:
    """Upsert rows in one transaction; database trouble becomes TransientError."""
    if not rows:
        return
    # One row per key: PostgreSQL refuses to update the same row twice in one statement.
    unique = {(r.post_id, r.model_name, r.model_version): r for r in rows}
    values = [asdict(r) for r in unique.values()]
    insert = pg_insert if db_url.startswith("postgresql") else sqlite_insert
    statement = insert(Result.__table__).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=["post_id", "model_name", "model_version"],
        set_={name: statement.excluded[name] for name in _UPDATABLE},
        where=Result.__table__.c.status != DONE,
    )
    try:
        with session_scope(db_url) as session:
            session.execute(statement)
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise TransientError(f"database write failed: {exc.__class__.__name__}: {reason}") from None


def done_ids(db_url: str, *, model_name: str, model_version: int, post_ids: list[str]) -> set[str]:
    """Which of `post_ids` already have a `done` row for this model version."""
    found: set[str] = set()
    with session_scope(db_url) as session:
        for start in range(0, len(post_ids), 500):
            chunk = post_ids[start : start + 500]
            found.update(session.scalars(
                select(Result.post_id).where(
                    Result.model_name == model_name, Result.model_version == model_version,
                    Result.status == DONE, Result.post_id.in_(chunk),
                )
            ))
    return found


def failed_rows(db_url: str, *, model_name: str | None = None, limit: int | None = None) -> list[Result]:
    with session_scope(db_url) as session:
        query = select(Result).where(Result.status == FAILED).order_by(Result.id)
        if model_name:
            query = query.where(Result.model_name == model_name)
        if limit:
            query = query.limit(limit)
        return list(session.scalars(query))


def delete_rows(db_url: str, row_ids: list[int]) -> None:
    with session_scope(db_url) as session:
        session.execute(delete(Result).where(Result.id.in_(row_ids)))
