"""Drill 3: the database goes away for a while in the middle of a run.

Posts keep arriving while PostgreSQL is stopped; the worker cannot read its
cache or write rows, turns that into TransientError and sends the posts
again with backoff. When the database is back every post gets its row —
and a database outage should not spend the posts' MAX_RETRIES (a post
that ends `failed` is not lost, but it is reported).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from shared.database.connection import session_scope
from shared.database.tables import Result
from testkit.drills.harness import (
    DrillResult,
    common_failures,
    ledger,
    settle,
    start_sender,
    start_stage,
    wait_for,
)
from testkit.drills.services import PrivatePostgres, PrivateRedis
from testkit.factories import make_posts


@dataclass
class OutageSize:
    posts: int = 400
    send_s: float = 14.0  # posts are sent evenly over this long
    outage_at_s: float = 3.0
    outage_s: float = 10.0
    malformed_every: int = 50  # one post in N is sent by name without text: must end `rejected`
    embed_delay_s: float = 0.05
    seed: int = 0


def run(size: OutageSize, workdir: Path) -> DrillResult:
    with PrivateRedis(aof=False) as broker, PrivatePostgres() as database:
        db_url = database.url
        stage = start_stage(db_url=db_url, redis_url=broker.url(), workdir=workdir, log_name="outage.log",
                            FAKE_EMBED_DELAY_S=str(size.embed_delay_s))
        settings, worker = stage.settings, stage.worker
        posts = make_posts(size.posts, "outage", size.seed)
        started = time.time()
        sender, errors = start_sender(settings, posts, size.send_s, size.malformed_every)
        try:
            time.sleep(size.outage_at_s)
            rows_before = wait_for(db_url, 0, timeout=0)
            database.outage(size.outage_s)
            rows_after = wait_for(db_url, 0, timeout=0)
            sender.join()
            alive, left = settle(worker, settings, size.posts, timeout=120 + size.outage_s * 3, stall_s=30)
        finally:
            worker.stop()
        book = ledger(db_url, [str(p["id"]) for p in posts])
        with session_scope(db_url) as session:
            attempts = dict(session.execute(select(Result.attempts, func.count()).group_by(Result.attempts)).all())
    from shared.database.connection import get_engine

    get_engine(db_url).dispose()
    malformed = sum(1 for i in range(size.posts) if size.malformed_every and i % size.malformed_every == 0)
    lost_malformed = sum(1 for i, p in enumerate(posts) if size.malformed_every and
                         i % size.malformed_every == 0 and p["id"] in book.lost)
    notes = [f"rows: {rows_before} before the outage, {rows_after} right after it",
             f"worker alive at the end: {alive}; left in Redis: {left}",
             f"{malformed} posts sent without text (must be `rejected`), {lost_malformed} of them lost",
             f"rows by attempts: {dict(sorted(attempts.items()))}"]
    failures = common_failures(alive=alive, left=left, errors=errors, log=worker.all_logs())
    expected = {"done": size.posts - malformed, "rejected": malformed} if malformed else {"done": size.posts}
    if book.statuses != expected:
        failures.append(f"statuses {book.statuses}, expected {expected} (failed = retries spent on the outage)")
    return DrillResult("db-outage", size.posts, f"PostgreSQL down {size.outage_s:.0f}s", len(book.lost),
                       book.duplicates, book.reprocessed, book.wall_since(started), book.statuses, notes,
                       extra={"alive": alive, "left": left, "lost_malformed": lost_malformed,
                              "malformed": malformed, "errors": errors, "attempts": attempts},
                       failures=failures)
