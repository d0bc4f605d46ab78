"""Drill 2: the Redis broker restarts (or crashes) in the middle of a run.

Redis runs with AOF and fsync on every write, so queued and unacknowledged
messages survive a restart, even a SIGKILL. The worker must reconnect by
itself, the producer must ride out the gap, and every post gets its row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from testkit.drills import aof
from testkit.drills.harness import (
    DrillResult,
    common_failures,
    ledger,
    settle,
    start_sender,
    start_stage,
)
from testkit.drills.services import PrivateRedis, fresh_database
from testkit.factories import make_posts


@dataclass
class BrokerSize:
    posts: int = 400
    send_s: float = 12.0
    restarts: int = 1
    first_at_s: float = 3.0
    every_s: float = 8.0  # between restarts
    down_s: float = 2.0  # how long Redis stays down each time
    embed_delay_s: float = 0.05
    malformed_every: int = 0
    seed: int = 0


def run(size: BrokerSize, workdir: Path) -> DrillResult:
    with PrivateRedis(aof=True) as broker, fresh_database() as db_url:
        stage = start_stage(db_url=db_url, redis_url=broker.url(), workdir=workdir, log_name="broker.log",
                            FAKE_EMBED_DELAY_S=str(size.embed_delay_s))
        settings, worker = stage.settings, stage.worker
        posts = make_posts(size.posts, "broker", size.seed)
        started = time.time()
        sender, errors = start_sender(settings, posts, size.send_s, size.malformed_every)
        kinds, marks = [], []
        try:
            time.sleep(size.first_at_s)
            for n in range(size.restarts):
                hard = n % 2 == 0  # SIGKILL first (a crash: only the AOF survives), then SIGTERM
                broker.stop(hard=hard)
                marks.append(aof.size(broker.aof_files()))
                time.sleep(size.down_s)
                broker.start()
                kinds.append("SIGKILL" if hard else "SIGTERM")
                if n + 1 < size.restarts:
                    time.sleep(size.every_s)
            sender.join()
            alive, left = settle(worker, settings, size.posts, timeout=120 + size.posts / 20, stall_s=40)
        finally:
            worker.stop()
        book = ledger(db_url, [str(p["id"]) for p in posts])
        trails = aof.history(broker.aof_files(), settings.queue, set(book.lost[:100]), marks) if book.lost else {}
    log = worker.all_logs()
    reconnects = log.count("celery.worker.consumer.connection: Connected to ")
    notes = [f"restarts: {', '.join(kinds)}, each down {size.down_s:.0f}s",
             f"worker alive at the end: {alive}; connected {reconnects} times; left in Redis: {left}",
             f"producer errors: {len(errors)}"]
    notes += errors[:5]
    notes += [f"lost {post_id}, in the AOF: {', '.join(trail) or 'never pushed'}" for post_id, trail in trails.items()]
    failures = common_failures(alive=alive, left=left, errors=errors, log=log)
    if book.lost:
        failures.append(f"{len(book.lost)} posts lost")
    if reconnects < size.restarts + 1:
        failures.append(f"the worker connected {reconnects} times for {size.restarts} restarts")
    if set(book.statuses) - {"done"}:
        failures.append(f"posts not done: {book.statuses}")
    return DrillResult("broker-restart", size.posts, f"{size.restarts} Redis restarts ({size.down_s:.0f}s down)",
                       len(book.lost), book.duplicates, book.reprocessed, book.wall_since(started),
                       book.statuses, notes, failures=failures,
                       extra={"alive": alive, "left": left, "errors": errors, "reconnects": reconnects})
