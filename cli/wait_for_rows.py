"""Waiting for sent posts to be classified: `topicq backfill --wait` and `--wait-only`.

A post is finished when it has a row of the model processed since the wait's
`since` (the moment sending began): `done`, `rejected`, or `failed` after
MAX_RETRIES. Older rows (an earlier run's failure) do not count. `--wait-only`
sends nothing and counts every row (ANY_TIME): it waits for what was sent before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.database.results import Status, finished_statuses

ANY_TIME = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class WaitReport:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Status, 0))
    pending: int = 0
    noun: str = "sent posts"

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    @property
    def ok(self) -> bool:
        return self.pending == 0 and self.counts[Status.DONE] == self.finished

    def summary(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items())
        return f"rows for {self.finished} of {self.finished + self.pending} {self.noun}: {counts}"


def wait_for_rows(db_url: str, *, model_name: str, post_ids: list[str], since: datetime, timeout_s: float,
                  poll_s: float = 1.0, progress: Callable[[int], object] | None = None,
                  noun: str = "sent posts") -> WaitReport:
    """Poll until every post has a row or `timeout_s` passed; `progress` gets the newly finished count."""
    report = WaitReport(noun=noun)
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
