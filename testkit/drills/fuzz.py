"""Drill 5: malformed payloads and broken envelopes, mixed with valid posts, all as raw list entries.

The worker must survive all of them without dying or restarting its consumer;
each malformed post with a usable id is recorded `rejected` with its reason,
one without is logged, every broken envelope ends in the dead-letter list
with its reason, and the valid posts that shared their batches are `done`.
Nothing is left queued, in flight or unacked after the visibility timeout.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from shared.settings import Settings
from testkit.drills.fuzz_cases import MAX_TEXT_CHARS, Case, make_cases
from testkit.drills.harness import (
    DrillResult,
    common_failures,
    ledger,
    start_stage,
    wait_drained,
)
from testkit.drills.services import PrivateRedis, fresh_database
from testkit.worker_process import WorkerProcess, count_rows

NO_ID_WARNING = "rejected a post without a usable id"


@dataclass
class FuzzSize:
    malformed: int = 500
    valid: int = 250
    envelope: int = 100  # broken envelopes and unreadable list entries
    seed: int = 0


# Log lines of a consumer that stopped or restarted (a broken message must cause neither).
CONSUMER_RESTARTS = ("Connection to broker lost", "RestartFreqExceeded", "Unrecoverable error",
                     "consumer: Cannot connect", "Traceback (most recent call last)")


def send(cases: list[Case], redis_url: str, queue: str) -> None:
    """LPUSH every case as a raw list entry: no Celery, no kombu (README, "Any language")."""
    import redis

    with redis.Redis.from_url(redis_url) as client:
        for case in cases:
            client.lpush(queue, case.list_entry(queue))


def dead_letters(redis_url: str, queue: str) -> list[dict]:
    import json

    import redis

    with redis.Redis.from_url(redis_url) as client:  # `<queue>.dead`, as the README documents it
        return [json.loads(entry) for entry in client.lrange(f"{queue}.dead", 0, -1)]


def supervise(worker: WorkerProcess, settings: Settings, expected: int, *, timeout: float, stall_s: float) -> int:
    """Wait for `expected` rows, restarting the worker whenever it dies (as a supervisor would);
    returns how many times it died."""
    deaths, deadline = 0, time.monotonic() + timeout
    last, moved = -1, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - moved < stall_s:
        if not worker.alive():
            deaths += 1
            worker.start()
        rows = count_rows(settings.db_url)
        if rows != last:
            last, moved = rows, time.monotonic()
        if rows >= expected:
            break
        time.sleep(0.5)
    return deaths


def run(size: FuzzSize, workdir: Path) -> DrillResult:
    cases = make_cases(size.malformed, size.valid, size.seed, n_envelope=size.envelope)
    with PrivateRedis(aof=False) as broker, fresh_database() as db_url:
        stage = start_stage(db_url=db_url, redis_url=broker.url(), workdir=workdir, log_name="fuzzed.log",
                            MAX_TEXT_CHARS=str(MAX_TEXT_CHARS))
        settings, worker = stage.settings, stage.worker
        started = time.time()
        with_rows = [c for c in cases if c.expect in ("done", "rejected")]
        expected_ids = [i for c in with_rows for i in c.meta.get("ids", [c.post_id])]
        try:
            send(cases, settings.redis_url, settings.queue)
            deaths = supervise(worker, settings, len(expected_ids), timeout=120 + len(cases) / 20, stall_s=30)
            # Anything stranded would come back after the visibility timeout: wait it out, then look.
            time.sleep(settings.visibility_timeout_s + 6)
            alive, left = worker.alive(), wait_drained(settings.redis_url, settings.queue)
        finally:
            worker.stop()
        book = ledger(db_url, expected_ids)
        dead = dead_letters(settings.redis_url, settings.queue)
    log = worker.all_logs()
    expected_status = {i: c.expect for c in with_rows for i in c.meta.get("ids", [c.post_id])}
    wrong = Counter(f"{c.kind}: expected {c.expect}, got {book.by_id[str(c.post_id)]}"
                    for c in with_rows if c.post_id in book.by_id and book.by_id[c.post_id] != c.expect)
    wrong.update(f"{i}: expected {status}, got {book.by_id[i]}" for i, status in expected_status.items()
                 if i in book.by_id and book.by_id[i] != status and i not in {c.post_id for c in with_rows})
    lost_kinds = Counter(c.kind for c in with_rows for i in c.meta.get("ids", [c.post_id]) if str(i) not in book.by_id)
    expected_warnings = sum(c.expect == "logged" for c in cases)
    warnings = log.count(NO_ID_WARNING)
    restarts = sum(log.count(marker) for marker in CONSUMER_RESTARTS)
    should_be_dead = sum(c.dead for c in cases)
    without_reason = sum(not letter.get("reason") for letter in dead)
    good = [c for c in cases if c.kind == "valid"]
    good_done = sum(book.by_id.get(str(c.post_id)) == "done" for c in good)
    kinds = Counter(c.expect for c in cases)
    left = {**left, "dead_letters": len(dead)}
    notes = [f"cases: {dict(kinds)} over {len({c.kind for c in cases})} kinds, {should_be_dead} broken envelopes",
             f"worker deaths: {deaths}, consumer restarts: {restarts}",
             f"good posts done: {good_done} of {len(good)}",
             f"posts without a usable id logged: {warnings} (expected at least {expected_warnings})",
             f"dead letters: {len(dead)} (expected {should_be_dead}), {without_reason} without a reason",
             f"left in Redis after the visibility timeout: {left}"]
    failures = common_failures(alive=alive, left={k: v for k, v in left.items() if k != "dead_letters"},
                               errors=[], log=log)
    failures += [f"wrong status: {line} x{count}" for line, count in sorted(wrong.items())]
    failures += [f"lost: {kind} x{count}" for kind, count in sorted(lost_kinds.items())]
    if deaths or restarts:
        failures.append(f"the worker died {deaths} times and its consumer restarted {restarts} times")
    if good_done < len(good):
        failures.append(f"{len(good) - good_done} good posts are not done")
    if warnings < expected_warnings:
        failures.append(f"{expected_warnings - warnings} posts without a usable id were not logged")
    if len(dead) != should_be_dead or without_reason:
        failures.append(f"dead letters: {len(dead)} with {without_reason} lacking a reason; expected "
                        f"{should_be_dead}")
    faults = f"{size.malformed:,} malformed payloads + {should_be_dead:,} broken envelopes"
    return DrillResult("fuzz", len(cases), faults, len(book.lost), book.duplicates, book.reprocessed,
                       book.wall_since(started), book.statuses, notes, failures=failures,
                       extra={"alive": alive, "wrong": sum(wrong.values()), "warnings": warnings,
                              "expected_warnings": expected_warnings, "deaths": deaths, "restarts": restarts,
                              "good": len(good), "good_done": good_done, "dead_letters": len(dead),
                              "expected_dead": should_be_dead, "left": left})
