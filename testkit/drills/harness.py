"""What every drill shares: its environment, the ledger that counts, and the checks it makes.

A drill is a plain function `run(size, workdir) -> DrillResult`, so the same
code runs short inside pytest and long from `bench/drills.py`.

The ledger: a BEFORE INSERT trigger on `results` copies every committed
write attempt into `drill_writes` (the upsert's conflicting rows included),
so a post written by two deliveries shows up twice there even though the
unique constraint keeps one row in `results`:

    lost         posts sent that have no row at all
    duplicates   post ids with more than one row (0 by the unique constraint)
    reprocessed  posts whose result was committed more than once (redelivery)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from shared.database.connection import get_engine, session_scope
from shared.database.tables import Result
from shared.settings import Settings
from testkit.worker_process import WorkerProcess, count_rows

LEDGER_SQL = """
CREATE TABLE IF NOT EXISTS drill_writes (
    post_id text, status text, batch_id text, attempts int, at timestamptz DEFAULT clock_timestamp());
CREATE OR REPLACE FUNCTION drill_log_write() RETURNS trigger AS $$
BEGIN
    INSERT INTO drill_writes (post_id, status, batch_id, attempts)
    VALUES (NEW.post_id, NEW.status, NEW.batch_id, NEW.attempts);
    RETURN NEW;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS drill_log ON results;
CREATE TRIGGER drill_log BEFORE INSERT ON results FOR EACH ROW EXECUTE FUNCTION drill_log_write();
"""


@dataclass
class DrillResult:
    drill: str
    posts: int
    faults: str
    lost: int
    duplicates: int
    reprocessed: int
    wall_s: float
    statuses: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # drill-specific figures the tests check
    failures: list[str] = field(default_factory=list)  # the drill's own checks that did not hold

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def describe(self) -> str:
        return (f"{self.drill}: {self.posts} posts, {self.faults}; lost {self.lost}, duplicates "
                f"{self.duplicates}, reprocessed {self.reprocessed}, {self.wall_s:.0f}s, {self.statuses}"
                + "".join(f"\n  - {note}" for note in self.notes)
                + "".join(f"\n  ! {failure}" for failure in self.failures))


def base_env(*, db_url: str, redis_url: str, workdir: Path, **overrides: str) -> dict[str, str]:
    """Worker settings for drills: small timeouts so that redelivery and retries happen within seconds."""
    env = {
        "DATABASE_URL": db_url, "REDIS_URL": redis_url, "EMBEDDER": "fake",
        "MODEL_DIR": str(workdir / "models"), "TOPICQ_HOME": str(workdir / "home"),
        "QUEUE": f"drill-{uuid.uuid4().hex[:8]}",
        "BATCH_SIZE": "16", "BATCH_WAIT_S": "0.3", "BACKFILL_CHUNK": "32",
        # Redelivery of a killed worker's messages after 8 s; longer than any buffer + batch here.
        "VISIBILITY_TIMEOUT_S": "8", "MODEL_REFRESH_S": "1",
        "RETRY_BASE_S": "0.2", "RETRY_MAX_S": "2",
    }
    env.update(overrides)
    return env


def settings_for(env: dict[str, str]) -> Settings:
    """The producer's settings: the same environment as the workers, without touching os.environ."""
    return Settings(**{key.lower(): value for key, value in env.items()})  # type: ignore[arg-type]


def prepare_database(db_url: str, model_dir: Path, **model: Any) -> int:
    """Migrate, install the write ledger, register and promote a model; returns its version."""
    from shared.database.migrate import upgrade
    from testkit.factories import register_fake_model

    upgrade(db_url)
    install_ledger(db_url)
    return register_fake_model(db_url, model_dir, **model)


@dataclass
class Stage:
    """A drill's stage: the worker's environment, the producer's settings and the worker itself."""

    env: dict[str, str]
    settings: Settings
    worker: WorkerProcess


def start_stage(*, db_url: str, redis_url: str, workdir: Path, log_name: str,
                worker_args: tuple[str, ...] = (), cli_args: tuple[str, ...] = (),
                **overrides: str) -> Stage:
    """A migrated database with the write ledger and a served model, and a worker running on it."""
    env = base_env(db_url=db_url, redis_url=redis_url, workdir=workdir, **overrides)
    settings = settings_for(env)
    prepare_database(db_url, settings.models_path)
    worker = WorkerProcess(env, workdir / log_name, worker_args=worker_args, cli_args=cli_args)
    worker.start()
    return Stage(env, settings, worker)


def install_ledger(db_url: str) -> None:
    with get_engine(db_url).begin() as conn:
        conn.exec_driver_sql(LEDGER_SQL)


@dataclass
class Ledger:
    rows: int
    lost: list[str]
    duplicates: int
    reprocessed: int
    statuses: dict[str, int]
    by_id: dict[str, str]  # post id -> status
    last_write: float | None  # epoch seconds of the last committed write

    def wall_since(self, started_epoch: float) -> float:
        """Seconds from `started_epoch` (time.time()) to the last write."""
        return max(0.0, (self.last_write or started_epoch) - started_epoch)


def ledger(db_url: str, expected_ids: Iterable[str]) -> Ledger:
    expected = list(dict.fromkeys(expected_ids))
    with session_scope(db_url) as session:
        rows = session.execute(select(Result.post_id, Result.status)).all()
        dupes = session.scalar(select(func.count()).select_from(
            select(Result.post_id).group_by(Result.post_id, Result.model_name)
            .having(func.count() > 1).subquery())) or 0
        reprocessed = session.execute(text(
            "SELECT count(*) FROM (SELECT post_id FROM drill_writes GROUP BY post_id HAVING count(*) > 1) s"
        )).scalar() or 0
        last_write = session.execute(text("SELECT extract(epoch FROM max(at)) FROM drill_writes")).scalar()
    by_id = {post_id: status for post_id, status in rows}
    statuses: dict[str, int] = {}
    for status in by_id.values():
        statuses[status] = statuses.get(status, 0) + 1
    lost = [post_id for post_id in expected if post_id not in by_id]
    return Ledger(len(rows), lost, int(dupes), int(reprocessed), statuses, by_id,
                  float(last_write) if last_write is not None else None)


def wait_for(db_url: str, expected: int, *, timeout: float, stall_s: float | None = None) -> int:
    """Rows until `expected` or `timeout`; with `stall_s`, give up earlier when nothing moves for that long."""
    deadline = time.monotonic() + timeout
    last, moved = -1, time.monotonic()
    while True:
        try:
            count = count_rows(db_url)
        except Exception:  # noqa: BLE001 - the database may be down during a drill
            count = last
        if count != last:
            last, moved = count, time.monotonic()
        if count >= expected or time.monotonic() > deadline:
            return count
        if stall_s is not None and time.monotonic() - moved > stall_s:
            return count
        time.sleep(0.5)


def stream(settings: Settings, posts: list[dict[str, Any]], send_s: float, malformed_every: int,
           errors: list[str]) -> None:
    """Send `posts` one message each, evenly over `send_s`; every Nth by name without its text.

    A send that fails is recorded in `errors` and the stream goes on (that post is then lost).
    """
    from shared.wire.producer import Producer
    from shared.wire.protocol import CLASSIFY_TASK

    producer = Producer(settings)
    started = time.monotonic()
    try:
        for i, post in enumerate(posts):
            pause = started + i * send_s / len(posts) - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                if malformed_every and i % malformed_every == 0:
                    producer.app.send_task(CLASSIFY_TASK, kwargs={"id": post["id"]}, queue=settings.queue)
                else:
                    producer.send(producer.validate(post["id"], post["text"], post.get("metadata")))
            except Exception as exc:  # noqa: BLE001 - reported by the drill
                errors.append(f"producer: post {post['id']}: {exc.__class__.__name__}: {exc}")
    finally:
        producer.close()


def start_sender(settings: Settings, posts: list[dict[str, Any]], send_s: float,
                 malformed_every: int = 0) -> tuple[threading.Thread, list[str]]:
    """`stream` on a thread of its own, started; the list gathers its send errors."""
    errors: list[str] = []
    sender = threading.Thread(target=stream, args=(settings, posts, send_s, malformed_every, errors))
    sender.start()
    return sender, errors


def common_failures(*, alive: bool, left: dict[str, int] | None, errors: list[str], log: str) -> list[str]:
    """Checks every drill makes: the worker lived, Redis is empty, the producer sent all, no bug in the log."""
    failures = [] if alive else ["the worker died"]
    if left and any(left.values()):
        failures.append(f"messages left in Redis: {left}")
    if errors:
        failures.append(f"{len(errors)} sends failed at the producer")
    failures += [f"log: {line[:300]}" for line in problems_in_log(log)[:5]]
    return failures


def problems_in_log(log: str) -> list[str]:
    """Lines that mean a bug rather than a handled fault."""
    markers = ("unexpected error in a batch", "dropping unparseable payload", "Unrecoverable error",
               "dropping the result of post", "UnicodeEncodeError")
    return [line for line in log.splitlines() if any(marker in line for marker in markers)]


def queue_left(redis_url: str, queue: str) -> dict[str, int]:
    """Messages still queued, in flight or unacknowledged: all 0 when a drill is over."""
    import redis

    from shared.wire.transport import inflight_key

    with redis.Redis.from_url(redis_url) as client:
        return {"queued": int(client.llen(queue)), "in_flight": int(client.llen(inflight_key(queue))),
                "unacked": int(client.hlen("unacked"))}


def wait_drained(redis_url: str, queue: str, timeout: float = 25.0) -> dict[str, int]:
    """`queue_left` once all are 0, or after `timeout`: a restored duplicate may still be in flight
    after the last row (redelivery comes VISIBILITY_TIMEOUT_S plus a sweep after the fault)."""
    deadline = time.monotonic() + timeout
    left = queue_left(redis_url, queue)
    while any(left.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
        left = queue_left(redis_url, queue)
    return left


def settle(worker: WorkerProcess, settings: Settings, expected: int, *, timeout: float, stall_s: float,
           pause_s: float = 1.0) -> tuple[bool, dict[str, int]]:
    """Wait for `expected` rows, then for Redis to drain: (worker alive, messages left in Redis)."""
    wait_for(settings.db_url, expected, timeout=timeout, stall_s=stall_s)
    time.sleep(pause_s)  # a late redelivery, if any, writes now
    return worker.alive(), wait_drained(settings.redis_url, settings.queue)
