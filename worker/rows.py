"""Writing result rows: one per (post_id, model_name, model_version), idempotently.

A redelivered message overwrites its own row instead of adding one, and a
`done` row is never overwritten by a later `failed` or `rejected` attempt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, DBAPIError, SQLAlchemyError, StatementError

from shared.db import Result, session_scope, utcnow
from shared.errors import TransientError

log = logging.getLogger(__name__)

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
    """Upsert rows in one transaction; database trouble becomes TransientError.

    A value the database refuses (a NUL character, NaN in JSON, ...) is not
    trouble that passes: the rows are then written one by one, and a row that
    still cannot be stored is recorded `rejected` without its payload, so one
    bad post cannot fail its whole batch on every redelivery.
    """
    if not rows:
        return
    # One row per key: PostgreSQL refuses to update the same row twice in one statement.
    unique = list({(r.post_id, r.model_name, r.model_version): r for r in rows}.values())
    try:
        _upsert(db_url, unique)
    except _DATA_ERRORS as exc:
        if len(unique) == 1:
            _record_unstorable(db_url, unique[0], exc)
            return
        log.warning("the database refused a batch of %d rows (%s); writing them one by one",
                    len(unique), _reason(exc))
        for row in unique:
            try:
                _upsert(db_url, [row])
            except _DATA_ERRORS as row_exc:
                _record_unstorable(db_url, row, row_exc)


# Values the database or its driver refuse: ValueError includes UnicodeEncodeError; OverflowError is
# an integer too large for the column (SQLite's 64-bit INTEGER).
_DATA_ERRORS = (DataError, ValueError, OverflowError, RecursionError)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "orig", None) or exc
    return ascii(f"{reason.__class__.__name__}: {reason}".splitlines()[0])[1:-1][:300]


def _record_unstorable(db_url: str, row: ResultRow, exc: BaseException) -> None:
    bare = ResultRow(post_id=row.post_id, model_name=row.model_name, model_version=row.model_version,
                     status=REJECTED, error=f"the result could not be stored: {_reason(exc)}",
                     attempts=min(max(row.attempts, 1), 2**31 - 1), batch_id=row.batch_id)
    try:
        _upsert(db_url, [bare])
        log.warning("post %s recorded rejected: %s", ascii(row.post_id), bare.error)
    except _DATA_ERRORS as bare_exc:  # the id itself cannot be stored: nothing can be written for it
        log.error("dropping the result of post %s: its id cannot be stored (%s)", ascii(row.post_id),
                  _reason(bare_exc))


def _upsert_statement(postgres: bool) -> Any:
    insert = pg_insert if postgres else sqlite_insert
    # The table, not the ORM class: rows are keyed by column name (`metadata`).
    statement = insert(cast(Table, Result.__table__))
    return statement.on_conflict_do_update(
        index_elements=["post_id", "model_name", "model_version"],
        set_={name: statement.excluded[name] for name in _UPDATABLE},
        where=Result.__table__.c.status != DONE,
    )


_STATEMENTS = {True: _upsert_statement(True), False: _upsert_statement(False)}
_FIELDS = [f.name for f in fields(ResultRow)]


def _upsert(db_url: str, rows: list[ResultRow]) -> None:
    # One statement with the rows as parameters (executemany): compiled once and cached,
    # where `.values(rows)` compiled a new statement of rows x columns parameters every batch.
    values = [{name: getattr(r, name) for name in _FIELDS} for r in rows]
    statement = _STATEMENTS[db_url.startswith("postgresql")]
    try:
        with session_scope(db_url) as session:
            session.execute(statement, values)
    except DataError:
        raise
    except StatementError as exc:
        if not isinstance(exc, DBAPIError) and isinstance(exc.orig, _DATA_ERRORS):
            raise exc.orig from None  # a value that could not even be sent
        raise TransientError(f"database write failed: {exc.__class__.__name__}: {_reason(exc)}") from None
    except SQLAlchemyError as exc:
        raise TransientError(f"database write failed: {exc.__class__.__name__}: {_reason(exc)}") from None


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
