"""Drills of a database that refuses writes, and of what must outlive it.

    read_only      PostgreSQL turns read-only (a replica after failover: the sessions are cut and
                   new ones cannot write) while posts arrive, then writable again. Every post ends
                   with one `done` row, no attempt spent on the fault, and `topicq health` FAILs with
                   the reason during it (SELECT 1 still succeeds on a read-only database).
    renamed        the `results` table renamed away and back: the same, with SELECT 1 fine throughout.
    down_at_start  a worker started while PostgreSQL is down waits (health says why) and serves once
                   it is back, never exiting; a message of an unknown task dead-lettered during a
                   later outage gets its `rejected` row once the database is back.
    resend         `topicq dead-letters resend` with two workers running and entries that are still
                   broken: it ends, moves each at most once, and a plain resend does not send again
                   what came back.

Each is `run(size, workdir) -> DrillResult`: short in tests/drills/test_db_faults.py, long in
bench/drills.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, make_url, select

from shared.database.connection import get_engine, session_scope
from shared.database.tables import Result
from testkit import wire
from testkit.databases import admin_sql
from testkit.drills.harness import (
    DrillResult,
    base_env,
    common_failures,
    ledger,
    prepare_database,
    settings_for,
    settle,
    start_sender,
    start_stage,
    wait_for,
)
from testkit.drills.services import PrivatePostgres, PrivateRedis, fresh_database
from testkit.factories import make_posts
from testkit.worker_process import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]  # this checkout: `topicq` below runs its code

# --- probes ----------------------------------------------------------------------------------------


def topicq(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str]:
    """`topicq ARGS` as an operator runs it, with a worker's settings: (exit code, output)."""
    env = {**env, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, (done.stdout + done.stderr).strip()


@dataclass
class HealthProbes:
    """`topicq health` run again and again during a fault: when it first FAILed and what it said."""

    runs: int = 0
    failed: int = 0
    first_fail_s: float | None = None  # after the fault began
    fail_lines: list[str] = field(default_factory=list)  # the first FAIL line of each check

    def probe(self, env: dict[str, str], since: float) -> int:
        code, output = topicq(env, "health")
        self.runs += 1
        if code != 0:
            self.failed += 1
            if self.first_fail_s is None:
                self.first_fail_s = time.monotonic() - since
            seen = {line.split()[1] for line in self.fail_lines}
            self.fail_lines += [line for line in output.splitlines()
                                if line.startswith("FAIL") and line.split()[1:2] and line.split()[1] not in seen]
        return code


def probe_until(env: dict[str, str], probes: HealthProbes, since: float, until: float) -> None:
    while time.monotonic() < until:
        probes.probe(env, since)
        time.sleep(max(0.0, min(1.0, until - time.monotonic())))


def health_ok_within(env: dict[str, str], timeout: float) -> float | None:
    """Seconds until `topicq health` passes again, or None."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if topicq(env, "health")[0] == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    return None


# --- read-only and renamed table --------------------------------------------------------------------


@dataclass
class FaultSize:
    posts: int = 300
    send_s: float = 8.0  # posts are sent evenly over this long: all sent before the fault ends
    fault_at_s: float = 2.0
    fault_s: float = 10.0
    embed_delay_s: float = 0.02
    seed: int = 0


@dataclass
class Fault:
    name: str
    describe: str
    begin: Callable[[str], None]
    end: Callable[[str], None]
    reason: str  # what the FAIL line of `topicq health` must name


def _read_only(on: bool) -> Callable[[str], None]:
    def apply(db_url: str) -> None:
        name = make_url(db_url).database
        statements = [f'ALTER DATABASE "{name}" SET default_transaction_read_only = {"on" if on else "off"}']
        if on:  # a failover cuts the sessions; the new ones come up read-only
            statements.append(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
        admin_sql(*statements)
    return apply


def _rename(old: str, new: str) -> Callable[[str], None]:
    def apply(db_url: str) -> None:
        with get_engine(db_url).begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            conn.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")
    return apply


READ_ONLY = Fault("db-read-only", "PostgreSQL read-only", _read_only(True), _read_only(False), "read-only")
RENAMED = Fault("db-table-renamed", "`results` renamed away", _rename("results", "results_away"),
                _rename("results_away", "results"), "results")


def run_read_only(size: FaultSize, workdir: Path) -> DrillResult:
    return _fault_drill(READ_ONLY, size, workdir)


def run_renamed(size: FaultSize, workdir: Path) -> DrillResult:
    return _fault_drill(RENAMED, size, workdir)


def _fault_drill(fault: Fault, size: FaultSize, workdir: Path) -> DrillResult:
    with PrivateRedis(aof=False) as broker, fresh_database() as db_url:
        stage = start_stage(db_url=db_url, redis_url=broker.url(), workdir=workdir, log_name=f"{fault.name}.log",
                            FAKE_EMBED_DELAY_S=str(size.embed_delay_s), HEARTBEAT_INTERVAL_S="0.5")
        settings, worker = stage.settings, stage.worker
        posts = make_posts(size.posts, fault.name, size.seed)
        probes = HealthProbes()
        started = time.time()
        sender, errors = start_sender(settings, posts, size.send_s)
        try:
            time.sleep(size.fault_at_s)
            rows_before = wait_for(db_url, 0, timeout=0)
            fault.begin(db_url)
            began = time.monotonic()
            probe_until(worker.env, probes, began, began + size.fault_s)
            counted = wait_for(db_url, 0, timeout=0)  # -1: cannot be counted (the table is away)
            rows_during = str(counted - rows_before) if counted >= 0 else "none counted"
            fault.end(db_url)
            ended = time.time()
            sender.join()
            alive, left = settle(worker, settings, size.posts, timeout=120 + size.fault_s * 3, stall_s=30)
            healthy_after_s = health_ok_within(worker.env, 30)
        finally:
            worker.stop()
        book = ledger(db_url, [str(p["id"]) for p in posts])
        with session_scope(db_url) as session:
            attempts = dict(session.execute(select(Result.attempts, func.count())
                                            .group_by(Result.attempts)).all())
    recover_s = max(0.0, (book.last_write or ended) - ended)
    log = worker.all_logs()
    notes = [f"{rows_before} rows before the fault, {rows_during} written during it",
             f"`topicq health` during the fault: {probes.failed} of {probes.runs} runs FAILed, the first "
             f"{_seconds(probes.first_fail_s)} after it began: {' | '.join(probes.fail_lines)[:300]}",
             f"all rows written {recover_s:.1f} s after the fault ended; health ok again after "
             f"{_seconds(healthy_after_s)}",
             f"rows by attempts: {dict(sorted(attempts.items()))}; worker alive: {alive}; left in Redis: {left}"]
    failures = common_failures(alive=alive, left=left, errors=errors, log=log)
    failures += [f"log: {line[:300]}" for line in log.splitlines() if "dropping post" in line][:3]
    if book.statuses != {"done": size.posts}:
        failures.append(f"statuses {book.statuses}, expected {{'done': {size.posts}}}")
    if attempts != {1: size.posts}:
        failures.append(f"rows by attempts {attempts}: the fault spent retries")
    if not any("writes" in line and fault.reason in line for line in probes.fail_lines):
        failures.append(f"`topicq health` never FAILed on the worker's writes naming {fault.reason!r} "
                        f"during the fault: {probes.fail_lines}")
    if healthy_after_s is None:
        failures.append("`topicq health` did not pass again within 30 s of the fault's end")
    return DrillResult(fault.name, size.posts, f"{fault.describe} {size.fault_s:.0f}s", len(book.lost),
                       book.duplicates, book.reprocessed, book.wall_since(started), book.statuses, notes,
                       extra={"alive": alive, "left": left, "errors": errors, "attempts": attempts,
                              "recover_s": round(recover_s, 1), "health_failed": probes.failed,
                              "health_runs": probes.runs, "health_fail_lines": probes.fail_lines,
                              "first_fail_s": probes.first_fail_s, "healthy_after_s": healthy_after_s},
                       failures=failures)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


# --- a worker started during an outage; a dead letter made during one --------------------------------


@dataclass
class StartSize:
    down_s: float = 8.0  # PostgreSQL down this long after the worker is started
    posts: int = 100
    unknown: int = 5  # messages of an unknown task (readable post ids) sent during the second outage
    outage_s: float = 6.0
    seed: int = 0


def run_down_at_start(size: StartSize, workdir: Path) -> DrillResult:
    import redis

    from shared.wire.dead_letters import dead_letter_key
    from worker.rejected_posts import pending_key

    with PrivateRedis(aof=False) as broker, PrivatePostgres() as database:
        db_url = database.url
        env = base_env(db_url=db_url, redis_url=broker.url(), workdir=workdir, HEARTBEAT_INTERVAL_S="0.5")
        settings = settings_for(env)
        prepare_database(db_url, settings.models_path)
        get_engine(db_url).dispose()
        database.stop()
        down_at = time.monotonic()
        worker = WorkerProcess(env, workdir / "down-at-start.log")
        start_errors: list[str] = []

        def start() -> None:
            try:
                worker.start(timeout=size.down_s + 120)
            except Exception as exc:  # noqa: BLE001 - reported by the drill
                start_errors.append(f"{exc.__class__.__name__}: {str(exc)[-600:]}")

        starter = threading.Thread(target=start)
        starter.start()
        client = redis.Redis.from_url(broker.url())
        try:
            waiting_logged = _wait_until(lambda: "waiting for the database" in worker.log(), 60)
            probes = HealthProbes()
            probe_until(worker.env, probes, down_at, down_at + size.down_s)
            alive_while_down = worker.alive()
            database.start()
            up_at = time.monotonic()
            starter.join()
            ready_after_s = time.monotonic() - up_at
            # A second outage while it runs: posts, and messages of an unknown task, sent during it.
            posts = make_posts(size.posts, "start", size.seed)
            unknown = [f"nosuch-{i}" for i in range(size.unknown)]
            sender, errors = start_sender(settings, posts[: size.posts // 2], 1.0)
            sender.join()
            database.stop()
            outage_at = time.monotonic()
            sender, more_errors = start_sender(settings, posts[size.posts // 2 :], 1.0)
            for post_id in unknown:
                client.lpush(settings.queue, wire.raw_message("topicq.nosuch", {"id": post_id, "text": "x"},
                                                              settings.queue))
            sender.join()
            dead = _wait_until(lambda: client.llen(dead_letter_key(settings.queue)) >= size.unknown, 30)
            pending_during = int(client.llen(pending_key(settings.queue)))
            time.sleep(max(0.0, outage_at + size.outage_s - time.monotonic()))
            database.start()
            back_at = time.time()
            alive, left = settle(worker, settings, size.posts + size.unknown, timeout=120, stall_s=30)
            pending_after = int(client.llen(pending_key(settings.queue)))
        finally:
            worker.stop()
            starter.join()
        book = ledger(db_url, [str(p["id"]) for p in posts] + unknown)
        get_engine(db_url).dispose()
    exit_code = worker.process.returncode if worker.process else None
    unknown_rejected = sum(1 for post_id in unknown if book.by_id.get(post_id) == "rejected")
    recover_s = max(0.0, (book.last_write or back_at) - back_at)
    notes = [f"worker started with PostgreSQL down: 'waiting' logged: {waiting_logged}, alive after "
             f"{size.down_s:.0f} s: {alive_while_down}; `topicq health` FAILed {probes.failed} of "
             f"{probes.runs} runs: {' | '.join(probes.fail_lines)[:240]}",
             f"ready {ready_after_s:.1f} s after PostgreSQL came back; exit code after SIGTERM: {exit_code}",
             f"second outage {size.outage_s:.0f} s: {size.unknown} messages of an unknown task dead-lettered "
             f"({dead}), {pending_during} rejections pending during it, {pending_after} after; "
             f"{unknown_rejected} of {size.unknown} got their rejected row",
             f"all rows written {recover_s:.1f} s after the database was back; left in Redis: {left}"]
    failures = common_failures(alive=alive, left=left, errors=errors + more_errors, log=worker.all_logs())
    failures += [f"worker start: {error}" for error in start_errors]
    if not waiting_logged or not alive_while_down:
        failures.append("the worker did not wait for the database at start")
    if not any("waiting" in line for line in probes.fail_lines):
        failures.append(f"`topicq health` did not say the worker waits: {probes.fail_lines}")
    if unknown_rejected != size.unknown:
        failures.append(f"{size.unknown - unknown_rejected} dead-lettered posts got no rejected row")
    if pending_after:
        failures.append(f"{pending_after} rejections still pending")
    expected = {"done": size.posts, "rejected": size.unknown}
    if book.statuses != expected:
        failures.append(f"statuses {book.statuses}, expected {expected}")
    return DrillResult("db-down-at-start", size.posts + size.unknown,
                       f"PostgreSQL down {size.down_s:.0f}s at start, then {size.outage_s:.0f}s",
                       len(book.lost), book.duplicates, book.reprocessed, recover_s, book.statuses, notes,
                       extra={"alive": alive, "left": left, "ready_after_s": round(ready_after_s, 1),
                              "waiting_logged": waiting_logged, "alive_while_down": alive_while_down,
                              "health_fail_lines": probes.fail_lines, "unknown_rejected": unknown_rejected,
                              "pending_during": pending_during, "pending_after": pending_after,
                              "start_errors": start_errors, "recover_s": round(recover_s, 1)},
                       failures=failures)


def _wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


# --- dead-letters resend with workers running -------------------------------------------------------


@dataclass
class ResendSize:
    entries: int = 200  # broken dead letters: half of an unknown task (with post ids), half junk bytes
    workers: int = 2
    timeout_s: float = 60.0  # a resend that has not ended by then never will


def _resend(env: dict[str, str], timeout: float, *args: str) -> tuple[int | None, float, str]:
    """(messages moved, seconds, output); None moved when it did not end within `timeout`."""
    started = time.monotonic()
    try:
        code, output = topicq(env, "dead-letters", "resend", *args, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - started, f"did not end within {timeout:.0f} s"
    moved = re.search(r"re-sent (\d+)", output)
    return (int(moved.group(1)) if moved and code == 0 else None), time.monotonic() - started, output


def run_resend(size: ResendSize, workdir: Path) -> DrillResult:
    from shared.wire.dead_letters import count, dead_letter_key, make_record

    with PrivateRedis(aof=False) as broker, fresh_database() as db_url:
        stage = start_stage(db_url=db_url, redis_url=broker.url(), workdir=workdir, log_name="resend-1.log")
        workers = [stage.worker] + [WorkerProcess(stage.env, workdir / f"resend-{n}.log").start()
                                    for n in range(2, size.workers + 1)]
        queue, client = stage.settings.queue, broker.client()
        for n in range(size.entries):
            if n % 2:
                raw, ids = f"junk {n}".encode(), []
            else:
                raw = wire.raw_message("topicq.nosuch", {"id": f"junk-{n}"}, queue).encode()
                ids = [f"junk-{n}"]
            client.lpush(dead_letter_key(queue), make_record(raw, reason="broken", queue=queue, post_ids=ids))
        env = workers[0].env
        try:
            first, first_s, first_out = _resend(env, size.timeout_s)
            back = _wait_until(lambda: count(client, queue) >= size.entries and client.llen(queue) == 0, 60)
            plain, plain_s, plain_out = _resend(env, size.timeout_s)
            forced, forced_s, forced_out = _resend(env, size.timeout_s, "--again")
            _wait_until(lambda: count(client, queue) >= size.entries and client.llen(queue) == 0, 60)
            final = count(client, queue)
            alive = all(w.alive() for w in workers)
        finally:
            for w in workers:
                w.stop()
        logs = "\n".join(w.all_logs() for w in workers)
    moved_lines = logs.count("moved a message")
    notes = [f"{size.entries} broken entries, {size.workers} workers running",
             f"resend: moved {first} in {first_s:.1f} s ({first_out[-160:]}); all back broken: {back}",
             f"plain resend again: moved {plain} in {plain_s:.1f} s; --again: moved {forced} in {forced_s:.1f} s",
             f"{moved_lines} 'moved a message' lines in the workers' logs; {final} dead letters at the end"]
    failures = [] if alive else ["a worker died"]
    if first is None or first > size.entries:
        failures.append(f"the resend did not end or moved more than it found: {first_out[-200:]}")
    if plain != 0:
        failures.append(f"a plain resend sent again what came back broken: {plain_out[-200:]}")
    if forced is None or forced > size.entries:
        failures.append(f"resend --again did not end or moved more than it found: {forced_out[-200:]}")
    lost = max(0, size.entries - final)
    return DrillResult("dead-letter-resend", size.entries, f"resend x3 with {size.workers} workers running",
                       lost, max(0, final - size.entries), 0, first_s, {}, notes,
                       extra={"moved": [first, plain, forced], "seconds": [first_s, plain_s, forced_s],
                              "moved_lines": moved_lines, "final": final, "alive": alive},
                       failures=failures)


__all__ = ["FaultSize", "ResendSize", "StartSize", "run_down_at_start", "run_read_only", "run_renamed",
           "run_resend"]
