"""Drill 5: malformed payloads sent by task name, mixed with valid posts.

The worker must survive all of them; each malformed post with a usable id
is recorded `rejected` with its reason, one without is logged, and the
valid posts that shared their batches are `done`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.drills.fuzz_cases import MAX_TEXT_CHARS, Case, make_cases
from tests.drills.harness import (
    DrillResult,
    DrillWorker,
    base_env,
    common_failures,
    ledger,
    prepare_database,
    settings_for,
    settle,
)
from tests.drills.services import PrivateRedis, fresh_database

NO_ID_WARNING = "rejected a post without a usable id"


@dataclass
class FuzzSize:
    malformed: int = 500
    valid: int = 250
    seed: int = 0


def send(cases: list[Case], settings) -> None:  # type: ignore[no-untyped-def]
    import redis

    from tests.worker.test_worker_integration import raw_message
    from worker.app import CLASSIFY_TASK
    from worker.client import Producer

    producer = Producer(settings)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        for case in cases:
            if case.raw_body is not None:
                client.lpush(settings.queue, raw_message(CLASSIFY_TASK, {}, settings.queue, body=case.raw_body))
            else:
                producer.app.send_task(CLASSIFY_TASK, args=case.args, kwargs=case.kwargs,
                                       queue=settings.queue)
    finally:
        producer.close()
        client.close()


def run(size: FuzzSize, workdir: Path) -> DrillResult:
    cases = make_cases(size.malformed, size.valid, size.seed)
    with PrivateRedis(aof=False) as broker, fresh_database() as db_url:
        env = base_env(db_url=db_url, redis_url=broker.url(), workdir=workdir,
                       MAX_TEXT_CHARS=str(MAX_TEXT_CHARS))
        settings = settings_for(env)
        prepare_database(db_url, settings.models_path)
        worker = DrillWorker(env, workdir, "fuzzed")
        worker.start()
        started = time.time()
        try:
            send(cases, settings)
            with_rows = [c for c in cases if c.expect in ("done", "rejected")]
            alive, left = settle(worker, settings, len(with_rows), timeout=120 + len(cases) / 20, stall_s=30)
        finally:
            worker.stop()
        book = ledger(db_url, [str(c.post_id) for c in with_rows])
    log = worker.all_logs()
    wrong = Counter(f"{c.kind}: expected {c.expect}, got {book.by_id[str(c.post_id)]}"
                    for c in with_rows if c.post_id in book.by_id and book.by_id[c.post_id] != c.expect)
    lost_kinds = Counter(c.kind for c in with_rows if str(c.post_id) not in book.by_id)
    expected_warnings = sum(c.expect == "logged" for c in cases)
    warnings = log.count(NO_ID_WARNING)
    undecodable = log.count("Can't decode message body")
    kinds = Counter(c.expect for c in cases)
    notes = [f"cases: {dict(kinds)} over {len({c.kind for c in cases})} kinds",
             f"worker alive at the end: {alive}",
             f"posts without a usable id logged: {warnings} (expected at least {expected_warnings})",
             f"undecodable messages refused by Celery: {undecodable} (sent {kinds['dropped']})",
             f"left in Redis afterwards: {left}"]
    failures = common_failures(alive=alive, left=left, errors=[], log=log)
    failures += [f"wrong status: {line} x{count}" for line, count in sorted(wrong.items())]
    failures += [f"lost: {kind} x{count}" for kind, count in sorted(lost_kinds.items())]
    if warnings < expected_warnings:
        failures.append(f"{expected_warnings - warnings} posts without a usable id were not logged")
    if undecodable < kinds["dropped"]:
        failures.append(f"{kinds['dropped'] - undecodable} undecodable messages not reported by Celery")
    faults = f"{size.malformed:,} malformed payloads + {kinds['dropped']} undecodable messages"
    return DrillResult("fuzz", len(cases), faults, len(book.lost), book.duplicates, book.reprocessed,
                       book.wall_since(started), book.statuses, notes, failures=failures,
                       extra={"alive": alive, "wrong": sum(wrong.values()), "warnings": warnings,
                              "expected_warnings": expected_warnings, "undecodable": undecodable,
                              "left": left})
