"""Results: the statuses, the idempotent upsert and the queries (the table: shared/database/tables.py).

One row per (post_id, model_name, model_version). A redelivered message
overwrites its own row instead of adding one. One rule for an id that comes
more than once, in one batch or in several: a `done` row is final (never
overwritten, by a later `failed`, `rejected` or even `done` result); until an
id has one, the latest outcome is kept. Every filter is a bound
parameter (no SQL is built from user text).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    Table,
    delete,
    exists,
    func,
    select,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, DBAPIError, StatementError
from sqlalchemy.orm import aliased

from shared.database import bulk_upsert
from shared.database.connection import Db, is_postgres, session_scope, transaction, utcnow
from shared.database.tables import Result

log = logging.getLogger(__name__)


class Status(StrEnum):
    """What became of a post; stored as these strings."""

    DONE = "done"
    REJECTED = "rejected"  # the post (or its result) cannot be used: never retried
    FAILED = "failed"  # gave up after MAX_RETRIES; `topicq retry-failed` sends it again


# The members as module names too (as `re` exports its flags): `from shared.database.results import DONE`.
DONE, REJECTED, FAILED = Status.DONE, Status.REJECTED, Status.FAILED


@dataclass
class ResultRow:
    post_id: str
    model_name: str
    model_version: int
    status: Status
    label: str | None = None
    score: float | None = None
    scores: dict[str, float] | None = None
    embedder_id: str | None = None
    error: str | None = None
    attempts: int = 1
    metadata: dict[str, Any] | None = None
    text: str | None = None  # failed rows (retry-failed), and rows KEEP_TEXT keeps
    received_at: datetime | None = None
    processed_at: datetime = field(default_factory=utcnow)
    batch_id: str | None = None
    needs_review: bool = False
    review_reason: str | None = None
    margin: float | None = None
    domain_score: float | None = None
    shadow: bool = False

    def answer(self, probabilities: Any, labels: list[str]) -> None:
        """The model's answer for this post: its top label and score, and every class's probability."""
        best = int(probabilities.argmax())
        self.label, self.score = labels[best], float(probabilities[best])
        self.scores = dict(zip(labels, map(float, probabilities), strict=True))


# --- writing -------------------------------------------------------------------------------------

Key = tuple[str, str, int]


def _key(row: ResultRow) -> Key:
    return (row.post_id, row.model_name, row.model_version)


def write_rows(db_url: str, rows: list[ResultRow]) -> list[ResultRow]:
    """Upsert rows in one transaction; an unreachable database is DatabaseUnavailableError.

    One rule for an id that comes more than once, whatever the batch boundaries: a `done`
    row is final; until an id has one, the latest outcome is kept. Returns the rows not
    kept for that reason (a repeat of an id already done), each logged once.

    A value the database refuses (a NUL character, NaN in JSON, ...) is not
    trouble that passes: the rows are then written one by one, and a row that
    still cannot be stored is recorded `rejected` without its payload, so one
    bad post cannot fail its whole batch on every redelivery.
    """
    if not rows:
        return []
    # One row per key (PostgreSQL refuses to update the same row twice in one statement): the first
    # done row, else the last.
    kept: dict[Key, ResultRow] = {}
    repeats: list[ResultRow] = []
    for row in rows:
        current = kept.get(_key(row))
        if current is not None and current.status == Status.DONE:
            repeats.append(row)
        else:
            kept[_key(row)] = row
    unique = list(kept.values())
    try:
        stored = _upsert(db_url, unique)
    except _DATA_ERRORS as exc:
        stored = _one_by_one(db_url, unique, exc)
    repeats += [row for row in unique if _key(row) not in stored]
    for row in repeats:
        log.info("post %s already has a done row for %s:%s; this %s result is not kept (a done row is "
                 "final)", ascii(row.post_id), row.model_name, row.model_version, row.status)
    return repeats


def _one_by_one(db_url: str, rows: list[ResultRow], exc: BaseException) -> set[Key]:
    """After a value was refused: each row on its own, the unstorable ones recorded `rejected`."""
    if len(rows) == 1:
        _record_unstorable(db_url, rows[0], exc)
        return {_key(rows[0])}
    log.warning("the database refused a batch of %d rows (%s); writing them one by one",
                len(rows), _reason(exc))
    stored: set[Key] = set()
    for row in rows:
        try:
            stored |= _upsert(db_url, [row])
        except _DATA_ERRORS as row_exc:
            _record_unstorable(db_url, row, row_exc)
            stored.add(_key(row))  # recorded (or logged as unstorable): not a repeat
    return stored


# Values the database or its driver refuse: ValueError includes UnicodeEncodeError; OverflowError is
# an integer too large for the column (SQLite's 64-bit INTEGER).
_DATA_ERRORS = (DataError, ValueError, OverflowError, RecursionError)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "orig", None) or exc
    return ascii(f"{reason.__class__.__name__}: {reason}".splitlines()[0])[1:-1][:300]


def _record_unstorable(db_url: str, row: ResultRow, exc: BaseException) -> None:
    bare = ResultRow(post_id=row.post_id, model_name=row.model_name, model_version=row.model_version,
                     status=Status.REJECTED, error=f"the result could not be stored: {_reason(exc)}",
                     attempts=min(max(row.attempts, 1), 2**31 - 1), batch_id=row.batch_id)
    try:
        _upsert(db_url, [bare])
        log.warning("post %s recorded rejected: %s", ascii(row.post_id), bare.error)
    except _DATA_ERRORS as bare_exc:  # the id itself cannot be stored: nothing can be written for it
        log.error("dropping the result of post %s: its id cannot be stored (%s)", ascii(row.post_id),
                  _reason(bare_exc))


_UPDATABLE = ("status", "label", "score", "scores", "embedder_id", "error", "attempts",
              "metadata", "text", "received_at", "processed_at", "batch_id", "needs_review",
              "review_reason", "margin", "domain_score", "shadow")


def _sqlite_upsert() -> Any:
    # The table, not the ORM class: rows are keyed by column name (`metadata`).
    statement = sqlite_insert(cast(Table, Result.__table__))
    return statement.on_conflict_do_update(
        index_elements=["post_id", "model_name", "model_version"],
        set_={name: statement.excluded[name] for name in _UPDATABLE},
        where=Result.__table__.c.status != Status.DONE.value,
    ).returning(statement.table.c.post_id, statement.table.c.model_name, statement.table.c.model_version)


_SQLITE_UPSERT = _sqlite_upsert()
_FIELDS = [f.name for f in fields(ResultRow)]


def _upsert(db_url: str, rows: list[ResultRow]) -> set[Key]:
    """The keys written (inserted, or updated over a row not `done`): a key missing had a done row."""
    values = [{name: getattr(r, name) for name in _FIELDS} for r in rows]
    try:
        with session_scope(db_url) as session:
            if is_postgres(session):  # one statement of column arrays (shared/database/bulk_upsert.py)
                written = session.execute(bulk_upsert.STATEMENT, bulk_upsert.column_arrays(values))
            else:  # the rows as parameters (executemany): one statement, compiled once
                written = session.execute(_SQLITE_UPSERT, values)
            return {(post_id, name, int(version)) for post_id, name, version in written}
    except StatementError as exc:
        if not isinstance(exc, DBAPIError) and isinstance(exc.orig, _DATA_ERRORS):
            raise exc.orig from None  # a value that could not even be sent
        raise


# --- reading -------------------------------------------------------------------------------------

_IDS_PER_QUERY = 500  # keys per IN (...): well under SQLite's variable limit
COLUMNS = ("post_id", "label", "score", "model_name", "model_version", "status", "error",
           "embedder_id", "attempts", "received_at", "processed_at", "needs_review", "review_reason",
           "margin", "domain_score")


def _of_model(query: Any, model: str | None, shadow: bool = False, in_shadow: bool | None = None) -> Any:
    """`query` narrowed to `model`: NAME or NAME:VERSION (None: every model).

    Rows scored in shadow are left out unless `shadow` or `model` names their version;
    `in_shadow` True keeps only them, False none of them."""
    name, _, version = (model or "").partition(":")
    if name:
        query = query.where(Result.model_name == name)
    if version:
        query = query.where(Result.model_version == int(version))
    if in_shadow is not None:
        query = query.where(Result.shadow.is_(in_shadow))
    elif not (version or shadow):
        query = query.where(Result.shadow.is_(False))
    return query


def _as_dict(row: Result, with_scores: bool) -> dict[str, Any]:
    record = {name: getattr(row, name) for name in COLUMNS}
    record["metadata"] = row.post_metadata
    if with_scores:
        record["scores"] = row.scores
    return record


def query_results(
    db: Db,
    *,
    label: str | None = None,
    model: str | None = None,
    min_score: float | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    post_ids: list[str] | None = None,
    needs_review: bool | None = None,
    limit: int | None = None,
    with_scores: bool = True,
    shadow: bool = False,
) -> list[dict[str, Any]]:
    """Result rows, newest first. `model` is NAME or NAME:VERSION; `shadow` adds challengers' rows."""
    query = _of_model(
        select(Result).order_by(Result.processed_at.desc(), Result.id.desc()), model, shadow)
    if label is not None:
        query = query.where(Result.label == label)
    if min_score is not None:
        query = query.where(Result.score >= min_score)
    if status:
        query = query.where(Result.status == status)
    if since:
        query = query.where(Result.processed_at >= since)
    if until:
        query = query.where(Result.processed_at < until)
    if post_ids is not None:
        query = query.where(Result.post_id.in_(post_ids))
    if needs_review is not None:
        query = query.where(Result.needs_review.is_(needs_review))
    if limit:
        query = query.limit(limit)
    with transaction(db) as session:
        return [_as_dict(row, with_scores) for row in session.scalars(query)]


def stats(db: Db, *, model: str | None = None, shadow: bool = False,
          in_shadow: bool | None = None) -> dict[str, Any]:
    """Counts by status, label and model version; posts per embed call (`shadow`: challengers too;
    `in_shadow` True: rows scored in shadow alone, False: served rows alone)."""
    with transaction(db) as session:
        by_status = dict(session.execute(
            _of_model(select(Result.status, func.count()).group_by(Result.status), model, shadow, in_shadow)
        ).all())
        by_label = dict(session.execute(
            _of_model(select(Result.label, func.count()).where(Result.label.is_not(None))
                      .group_by(Result.label), model, shadow, in_shadow)
        ).all())
        by_version = {
            f"{name}:{version}": count
            for name, version, count in session.execute(
                _of_model(select(Result.model_name, Result.model_version, func.count())
                          .group_by(Result.model_name, Result.model_version), model, shadow, in_shadow)
            )
        }
        posts, batches = session.execute(
            _of_model(select(func.count(Result.batch_id), func.count(Result.batch_id.distinct())),
                      model, shadow, in_shadow)
        ).one()
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_label": dict(sorted(by_label.items())),
        "by_model": by_version,
        "posts_per_embed_call": round(posts / batches, 2) if batches else None,
    }


def count_rows(db: Db, *, post_ids: Iterable[str] | None = None, **filters: Any) -> int:
    """Rows whose columns equal `filters` (e.g. model_name=..., status="done"), among `post_ids` if given."""
    with transaction(db) as session:
        def count(ids: list[str] | None) -> int:
            query = select(func.count()).select_from(Result).where(
                *(getattr(Result, name) == value for name, value in filters.items()))
            if ids is not None:
                query = query.where(Result.post_id.in_(ids))
            return int(session.scalar(query) or 0)

        if post_ids is None:
            return count(None)
        ids = list(post_ids)
        return sum(count(ids[start : start + _IDS_PER_QUERY]) for start in range(0, len(ids), _IDS_PER_QUERY))


def done_ids(db: Db, *, model_name: str, model_version: int, post_ids: list[str]) -> set[str]:
    """Which of `post_ids` already have a `done` row for this model version."""
    found: set[str] = set()
    with transaction(db) as session:
        for start in range(0, len(post_ids), _IDS_PER_QUERY):
            found.update(session.scalars(
                select(Result.post_id).where(
                    Result.model_name == model_name, Result.model_version == model_version,
                    Result.status == Status.DONE.value,
                    Result.post_id.in_(post_ids[start : start + _IDS_PER_QUERY]),
                )
            ))
    return found


_BEST_FIRST = list(Status)  # a post with rows of several versions counts as its best


def finished_statuses(db: Db, *, model_name: str, post_ids: list[str], since: datetime) -> dict[str, Status]:
    """The best status of each of `post_ids` with a row of `model_name` processed at or after `since`."""
    found: dict[str, Status] = {}
    with transaction(db) as session:
        for start in range(0, len(post_ids), _IDS_PER_QUERY):
            query = select(Result.post_id, Result.status).where(
                Result.model_name == model_name, Result.processed_at >= since,
                Result.post_id.in_(post_ids[start : start + _IDS_PER_QUERY]))
            for post_id, stored in session.execute(query):
                status = Status(stored)
                if post_id not in found or _BEST_FIRST.index(status) < _BEST_FIRST.index(found[post_id]):
                    found[post_id] = status
    return found


def failed_rows(db: Db, *, model_name: str, model_version: int | None = None,
                limit: int | None = None) -> list[Result]:
    query = (select(Result).where(Result.status == Status.FAILED.value, Result.model_name == model_name)
             .order_by(Result.id))
    if model_version is not None:
        query = query.where(Result.model_version == model_version)
    with transaction(db) as session:
        return list(session.scalars(query.limit(limit) if limit else query))


def drop_replaced_failed_rows(db: Db, *, model_name: str) -> int:
    """Delete `model_name`'s failed rows that a newer row of the same post has replaced; returns how many.

    A failed row is deleted only once a newer row of the same post and model exists:
    the row a retry writes replaces it by itself when it has the same model version
    (the upsert), and is newer than it otherwise (e.g. failed under version 0, when
    no model could be loaded). Sending a post again therefore never loses its row.
    """
    newer = aliased(Result)
    replaced = exists().where(newer.post_id == Result.post_id, newer.model_name == Result.model_name,
                              newer.model_version != Result.model_version,
                              newer.processed_at >= Result.processed_at)
    with transaction(db) as session:
        result = session.execute(
            delete(Result).where(Result.status == Status.FAILED.value, Result.model_name == model_name,
                                 replaced)
            .execution_options(synchronize_session=False))
        return int(getattr(result, "rowcount", 0) or 0)
