"""Drill 1: SIGKILL the worker at random moments during a backfill, restart it each time.

Late acks + Redis redelivery after VISIBILITY_TIMEOUT_S must bring back
every chunk the dead worker held: every post ends with exactly one row.
A second backfill of the same posts then sends nothing (resumable).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from testkit.drills.harness import (
    DrillResult,
    common_failures,
    ledger,
    queue_left,
    settle,
    start_stage,
    wait_for,
)
from testkit.drills.services import PrivateRedis, fresh_database
from testkit.factories import make_posts


@dataclass
class KillSize:
    posts: int = 600
    kills: int = 3
    embed_delay_s: float = 0.3  # per embed call: slow enough that kills land mid-chunk
    chunk: int = 20
    # Prefetch is 2 x BATCH_SIZE messages: keep what a worker holds under VISIBILITY_TIMEOUT_S of work.
    batch_size: int = 16
    # Kills land when the rows reach random points between these shares of the posts.
    between: tuple[float, float] = (0.05, 0.9)
    seed: int = 0


def run(size: KillSize, workdir: Path) -> DrillResult:
    from cli.backfill import backfill

    rng = random.Random(size.seed)
    with PrivateRedis(aof=False) as broker, fresh_database() as db_url:
        stage = start_stage(db_url=db_url, redis_url=broker.url(), workdir=workdir, log_name="victim.log",
                            FAKE_EMBED_DELAY_S=str(size.embed_delay_s), BACKFILL_CHUNK=str(size.chunk),
                            BATCH_SIZE=str(size.batch_size))
        settings, worker = stage.settings, stage.worker
        posts = make_posts(size.posts, "kill", size.seed)
        started = time.time()
        report = backfill(posts, settings=settings)
        kills, in_flight = 0, []
        marks = sorted(int(rng.uniform(*size.between) * size.posts) for _ in range(size.kills))
        try:
            for mark in marks:
                written = wait_for(db_url, mark, timeout=120, stall_s=60)
                if written >= size.posts:
                    break  # all done: nothing left to interrupt
                time.sleep(rng.uniform(0, 0.5))
                in_flight.append(queue_left(settings.redis_url, settings.queue)["unacked"])
                worker.kill()
                kills += 1
                worker.start()
                wait_for(db_url, written + 1, timeout=60)  # the restarted worker moves before the next kill
            # Redelivery needs VISIBILITY_TIMEOUT_S plus a restore sweep after the last kill.
            alive, left = settle(worker, settings, size.posts, timeout=300 + size.posts / 20, stall_s=60,
                                 pause_s=2)
            again = backfill(posts, settings=settings)
        finally:
            worker.stop()
        book = ledger(db_url, [str(p["id"]) for p in posts])
    notes = [f"backfill sent {report.sent} posts in {report.chunks} chunks of {size.chunk}",
             f"backfill run again afterwards sent {again.sent} (skipped {again.skipped_done} done)",
             f"unacknowledged messages the worker held when killed: {in_flight}",
             f"worker started {worker.starts} times; left in Redis: {left}"]
    failures = common_failures(alive=alive, left=left, errors=[], log=worker.all_logs())
    if again.sent:
        failures.append(f"a second backfill still sent {again.sent} posts")
    if kills < size.kills:
        failures.append(f"only {kills} of {size.kills} kills landed before the backfill finished")
    if set(book.statuses) - {"done"}:
        failures.append(f"posts not done: {book.statuses}")
    return DrillResult("kill", size.posts, f"{kills} SIGKILLs", len(book.lost), book.duplicates,
                       book.reprocessed, book.wall_since(started), book.statuses, notes,
                       extra={"in_flight": in_flight}, failures=failures)
