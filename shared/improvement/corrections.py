"""Corrections: the labels reviewers give posts, per model name; and the review queue they come from.

One correction per (post_id, model_name): importing a post again replaces its
label. A correction keeps the post's text when it is known (from the import
file, else from a result row that kept it: KEEP_TEXT), so training can use it
after the results are gone. An import is checked whole before anything is
written: every unknown post id or label is reported, and then nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from shared.database.connection import Db, transaction, utcnow
from shared.database.results import Status
from shared.database.tables import Correction, Result

_IDS_PER_QUERY = 500
# The longest value each column stores (String(200) below); NUL is refused everywhere, as PostgreSQL does.
_MAX_CHARS = {"post_id": 200, "label": 200, "reviewer": 200}


@dataclass(frozen=True)
class CorrectionInput:
    line: int  # where it came from, for messages (1 = the first data row)
    post_id: str
    label: str
    reviewer: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class CorrectedPost:
    post_id: str
    label: str
    reviewer: str | None
    text: str | None
    created_at: datetime


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[start : start + _IDS_PER_QUERY] for start in range(0, len(ids), _IDS_PER_QUERY)]


def _known_posts(db: Db, model_name: str, post_ids: list[str]) -> dict[str, str | None]:
    """Each post id with a result of `model_name`, with a text one of its rows kept (else None)."""
    found: dict[str, str | None] = {}
    with transaction(db) as session:
        for chunk in _chunks(post_ids):
            query = select(Result.post_id, Result.text).where(
                Result.model_name == model_name, Result.post_id.in_(chunk))
            for post_id, text in session.execute(query):
                if found.get(post_id) is None:
                    found[post_id] = text
    return found


def storable_problems(row: CorrectionInput) -> list[str]:
    """Why the database could not store `row` as it is: a value too long, or holding a NUL character."""
    problems = []
    for field in ("post_id", "label", "reviewer", "text"):
        value = getattr(row, field)
        if value is None:
            continue
        if "\x00" in value:
            problems.append(f"line {row.line}: {field} holds a NUL character")
        elif len(value) > _MAX_CHARS.get(field, len(value)):
            problems.append(f"line {row.line}: {field} is {len(value)} characters long, more than "
                            f"{_MAX_CHARS[field]}")
    return problems


def check_corrections(db: Db, *, model_name: str, rows: list[CorrectionInput],
                      labels: list[str]) -> list[str]:
    """Every problem of `rows`, one line each: values the database cannot store, repeated or unknown
    post ids, labels not in `labels`."""
    problems = [problem for row in rows for problem in storable_problems(row)]
    rows = [row for row in rows if not storable_problems(row)]  # a NUL cannot even be looked up
    known = _known_posts(db, model_name, list({row.post_id for row in rows}))
    first_line: dict[str, int] = {}
    for row in rows:
        if row.post_id in first_line:
            problems.append(f"line {row.line}: post {row.post_id!r} again (first on line "
                            f"{first_line[row.post_id]})")
            continue
        first_line[row.post_id] = row.line
        if row.post_id not in known:
            problems.append(f"line {row.line}: unknown post id {row.post_id!r} (no result of model "
                            f"{model_name!r})")
        if row.label not in labels:
            problems.append(f"line {row.line}: label {row.label!r} is not a class of {model_name} "
                            f"({', '.join(labels)})")
    return problems


def store_corrections(db: Db, *, model_name: str, rows: list[CorrectionInput]) -> int:
    """Write checked rows in one transaction (a post corrected before gets the new label); returns
    how many."""
    known = _known_posts(db, model_name, [row.post_id for row in rows])
    now = utcnow()
    with transaction(db) as session:
        existing = {c.post_id: c for chunk in _chunks([r.post_id for r in rows])
                    for c in session.scalars(select(Correction).where(
                        Correction.model_name == model_name, Correction.post_id.in_(chunk)))}
        for row in rows:
            text = row.text or known.get(row.post_id)
            correction = existing.get(row.post_id)
            if correction is None:
                session.add(Correction(post_id=row.post_id, model_name=model_name, label=row.label,
                                       reviewer=row.reviewer, text=text, created_at=now))
            else:
                correction.label, correction.reviewer, correction.created_at = row.label, row.reviewer, now
                correction.text = text or correction.text
    return len(rows)


def corrections(db: Db, *, model_name: str, since: datetime | None = None) -> list[CorrectedPost]:
    """The corrections of `model_name`, oldest first."""
    query = select(Correction).where(Correction.model_name == model_name).order_by(Correction.created_at,
                                                                                      Correction.id)
    if since is not None:
        query = query.where(Correction.created_at >= since)
    with transaction(db) as session:
        return [CorrectedPost(c.post_id, c.label, c.reviewer, c.text, c.created_at)
                for c in session.scalars(query)]


def review_queue(db: Db, *, model_name: str, version: int | None = None,
                 limit: int | None = None) -> list[dict[str, Any]]:
    """`done` rows flagged for review whose post has no correction yet, the most uncertain first:
    smallest margin over the runner-up, then lowest score. One row per post: its most uncertain one."""
    corrected = select(Correction.post_id).where(Correction.model_name == model_name)
    query = (select(Result).where(Result.model_name == model_name, Result.needs_review.is_(True),
                                  Result.status == Status.DONE.value, Result.post_id.not_in(corrected))
             .order_by(Result.margin.asc(), Result.score.asc(), Result.model_version.desc(), Result.id))
    if version is not None:
        query = query.where(Result.model_version == version)
    rows: dict[str, dict[str, Any]] = {}
    with transaction(db) as session:
        for row in session.scalars(query):
            if row.post_id in rows:
                continue
            rows[row.post_id] = _queue_entry(row)
            if limit and len(rows) >= limit:
                break
    return list(rows.values())


def _queue_entry(row: Result) -> dict[str, Any]:
    scores = sorted((row.scores or {}).items(), key=lambda item: -item[1])
    runner_up, runner_up_score = scores[1] if len(scores) > 1 else (None, None)
    return {"post_id": row.post_id, "label": row.label, "score": row.score, "runner_up": runner_up,
            "runner_up_score": runner_up_score, "margin": row.margin, "reason": row.review_reason,
            "domain_score": row.domain_score, "model": f"{row.model_name}:{row.model_version}",
            "text": row.text}
