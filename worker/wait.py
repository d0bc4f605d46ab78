"""Waiting for sent posts to be classified: `topicq backfill --wait`.

A post is finished when it has a row of the model processed since the wait's
`since` (the moment sending began): `done`, `rejected`, or `failed` after
MAX_RETRIES. Older rows (an earlier run's failure) do not count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from shared.db import Result, session_scope
from worker.rows import DONE, FAILED, REJECTED

_IDS_PER_QUERY = 500
_RANK = {DONE: 0, REJECTED: 1, FAILED: 2}  # a post with rows of several versions counts as its best


@dataclass
class WaitReport:
    counts: dict[str, int] = field(default_factory=lambda: {DONE: 0, REJECTED: 0, FAILED: 0})
    pending: int = 0

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    @property
    def ok(self) -> bool:
        return self.pending == 0 and self.counts[DONE] == self.finished

    def summary(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items())
        return f"rows for {self.finished} of {self.finished + self.pending} sent posts: {counts}"


def finished_statuses(db_url: str, *, model_name: str, post_ids: list[str],
                      since: datetime) -> dict[str, str]:
    """The status of each of `post_ids` that has a row of `model_name` processed at or after `since`."""
    found: dict[str, str] = {}
    with session_scope(db_url) as session:
        for start in range(0, len(post_ids), _IDS_PER_QUERY):
            query = select(Result.post_id, Result.status).where(
                Result.model_name == model_name, Result.processed_at >= since,
                Result.post_id.in_(post_ids[start : start + _IDS_PER_QUERY]))
            for post_id, status in session.execute(query):
                if post_id not in found or _RANK.get(status, 9) < _RANK.get(found[post_id], 9):
                    found[post_id] = status
    return found


def wait_for_rows(db_url: str, *, model_name: str, post_ids: list[str], since: datetime, timeout_s: float,
                  poll_s: float = 1.0, progress: Callable[[int], object] | None = None) -> WaitReport:
    """Poll until every post has a row or `timeout_s` passed; `progress` gets the newly finished count."""
    report = WaitReport()
    pending = list(dict.fromkeys(post_ids))
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = finished_statuses(db_url, model_name=model_name, post_ids=pending, since=since)
        for status in statuses.values():
            report.counts[status] = report.counts.get(status, 0) + 1
        pending = [post_id for post_id in pending if post_id not in statuses]
        report.pending = len(pending)
        if progress and statuses:
            progress(len(statuses))
        if not pending or time.monotonic() >= deadline:
            return report
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
