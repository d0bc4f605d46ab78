"""Drill: Redis is full (maxmemory, noeviction) when a worker starts, then memory is freed.

A full Redis refuses the writes that take a message (BLMOVE, the unacked record), so
nothing can be processed safely: the worker must start anyway, stay alive, back off
(not spin), and `topicq health` must say why; once Redis takes writes again every
queued post gets its row, none twice, and a SIGTERM ends the worker with status 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from cli.health import check_redis
from testkit import wire
from testkit.drills.harness import (
    DrillResult,
    base_env,
    common_failures,
    ledger,
    prepare_database,
    settings_for,
    wait_drained,
    wait_for,
)
from testkit.drills.services import PrivateRedis, fresh_database
from testkit.factories import make_posts
from testkit.worker_process import WorkerProcess


@dataclass
class RedisFullSize:
    posts: int = 300
    full_s: float = 8.0  # how long Redis stays full after the worker is ready
    seed: int = 0


def run(size: RedisFullSize, workdir: Path) -> DrillResult:
    with PrivateRedis(aof=False) as broker, fresh_database() as db_url:
        env = base_env(db_url=db_url, redis_url=broker.url(), workdir=workdir)
        settings = settings_for(env)
        prepare_database(db_url, settings.models_path)
        client = broker.client()
        posts = make_posts(size.posts, "full", size.seed)
        for post in posts:
            client.lpush(settings.queue, wire.raw_message(wire.CLASSIFY, {"id": post["id"], "text": post["text"]},
                                                          settings.queue))
        # Full from here on: not one more byte for a write.
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", str(int(client.info("memory")["used_memory"])))
        started = time.time()
        worker = WorkerProcess(env, workdir / "redis-full.log")
        failures: list[str] = []
        try:
            worker.start(timeout=120)
            time.sleep(size.full_s)
            health = check_redis(settings.redis_url)
            rows_while_full = wait_for(db_url, 0, timeout=0)
            alive_while_full = worker.alive()
            reconnects = worker.log().count("Connection to broker lost")
            client.config_set("maxmemory", "0")
            freed = time.time()
            rows = wait_for(db_url, size.posts, timeout=120, stall_s=40)
            resumed_s = time.time() - freed
            left = wait_drained(settings.redis_url, settings.queue)
        finally:
            worker.stop()
        exit_code = worker.process.returncode if worker.process else None
        book = ledger(db_url, [str(p["id"]) for p in posts])
        from shared.database.connection import get_engine

        get_engine(db_url).dispose()
    if health.ok or "full" not in health.detail:
        failures.append(f"health said {health.line()!r} while Redis was full")
    if not alive_while_full:
        failures.append("the worker died while Redis was full")
    if rows_while_full:
        failures.append(f"{rows_while_full} rows written while Redis was full (without an unacked record?)")
    if exit_code != 0:
        failures.append(f"the worker exited {exit_code} on SIGTERM")
    # About one reconnect per backoff step (growing to 10 s), not thousands.
    if reconnects > 5 * size.full_s:
        failures.append(f"{reconnects} reconnects in {size.full_s:.0f} s: the worker spins")
    failures += common_failures(alive=True, left=left, errors=[], log=worker.all_logs())
    notes = [f"health while full: {health.line()}", f"reconnects while full: {reconnects}",
             f"all {rows} rows {resumed_s:.1f} s after memory was freed; exit status {exit_code}"]
    return DrillResult("redis-full", size.posts, f"Redis full for {size.full_s:.0f}s at start", len(book.lost),
                       book.duplicates, book.reprocessed, book.wall_since(started), book.statuses, notes,
                       extra={"reconnects": reconnects, "resumed_s": resumed_s, "exit_code": exit_code},
                       failures=failures)
