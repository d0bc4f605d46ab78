"""Reading results: the Python API behind `topicq results` and `topicq stats`.

Every filter is a bound parameter (no SQL is built from user text).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from shared.db import Result, session_scope

COLUMNS = ("post_id", "label", "score", "model_name", "model_version", "status", "error",
           "embedder_id", "attempts", "received_at", "processed_at")


def _as_dict(row: Result, with_scores: bool) -> dict[str, Any]:
    record = {name: getattr(row, name) for name in COLUMNS}
    record["metadata"] = row.post_metadata
    if with_scores:
        record["scores"] = row.scores
    return record


def query_results(
    db_url: str,
    *,
    label: str | None = None,
    model: str | None = None,
    min_score: float | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    post_ids: list[str] | None = None,
    limit: int | None = None,
    with_scores: bool = True,
) -> list[dict[str, Any]]:
    """Result rows, newest first. `model` is NAME or NAME:VERSION."""
    query = select(Result).order_by(Result.processed_at.desc(), Result.id.desc())
    if label is not None:
        query = query.where(Result.label == label)
    if model:
        name, _, version = model.partition(":")
        query = query.where(Result.model_name == name)
        if version:
            query = query.where(Result.model_version == int(version))
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
    if limit:
        query = query.limit(limit)
    with session_scope(db_url) as session:
        return [_as_dict(row, with_scores) for row in session.scalars(query)]


def stats(db_url: str, *, model: str | None = None) -> dict[str, Any]:
    """Counts by status, label and model version; posts per embed call."""
    def where(query: Any) -> Any:
        if model:
            name, _, version = model.partition(":")
            query = query.where(Result.model_name == name)
            if version:
                query = query.where(Result.model_version == int(version))
        return query

    with session_scope(db_url) as session:
        by_status = dict(session.execute(
            where(select(Result.status, func.count()).group_by(Result.status))
        ).all())
        by_label = dict(session.execute(
            where(select(Result.label, func.count()).where(Result.label.is_not(None)).group_by(Result.label))
        ).all())
        by_version = {
            f"{name}:{version}": count
            for name, version, count in session.execute(
                where(select(Result.model_name, Result.model_version, func.count())
                      .group_by(Result.model_name, Result.model_version))
            )
        }
        posts, batches = session.execute(
            where(select(func.count(Result.batch_id), func.count(Result.batch_id.distinct())))
        ).one()
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_label": dict(sorted(by_label.items())),
        "by_model": by_version,
        "posts_per_embed_call": round(posts / batches, 2) if batches else None,
    }
