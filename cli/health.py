"""Is this worker ready? The checks of `topicq health`, each cheap and bounded by a timeout.

    worker    the heartbeat file is fresh (the consumer loop runs) and names the model and
              embedder it serves now                  (liveness: this check alone)
    writes    the worker's latest database write succeeded (from the heartbeat): a database that
              answers SELECT 1 may still refuse every write (read-only after a failover, a
              table renamed away), and only the worker's own writes tell
    redis     the broker answers PING and is not full (maxmemory reached with noeviction: it
              refuses the writes that take a message, so workers wait)
    database  the results database answers SELECT 1 (and, on PostgreSQL, is not read-only)

Ready = every check passes. Nothing here imports Celery, TensorFlow or torch: a
probe runs in a fraction of a second of CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.database.connection import safe_url
from shared.settings import Settings
from worker.heartbeat import read_heartbeat

TIMEOUT_S = 3.0  # a probe that hangs is a failed probe


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name:<9} {self.detail}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def check_worker(path: Path, max_age_s: float, now: float | None = None) -> Check:
    beat = read_heartbeat(path)
    if beat is None:
        return Check("worker", False, f"no heartbeat in {path} (is `topicq worker` running here, "
                                      "with the same HEARTBEAT_FILE / TOPICQ_HOME?)")
    age = (time.time() if now is None else now) - float(beat["at"])
    who = f"{beat.get('worker')} serving {beat.get('serving') or 'nothing'} with {beat.get('embedder')}"
    if age > max_age_s:
        return Check("worker", False, f"{who}: last heartbeat {age:.0f} s ago, more than {max_age_s:g} s "
                                      "(consumer loop stuck, or reconnecting to Redis)")
    if beat.get("waiting"):
        return Check("worker", False, f"{who}: not ready, waiting {beat['waiting']}")
    if not beat.get("serving"):
        return Check("worker", False, f"{who}: no model loaded")
    return Check("worker", True, f"{who}, heartbeat {age:.1f} s ago")


def check_writes(path: Path, now: float | None = None) -> Check:
    """FAIL while the worker's writes fail, with the database's reason and since when."""
    beat = read_heartbeat(path)
    outcome = (beat or {}).get("database")
    if not isinstance(outcome, dict):
        return Check("writes", True, "no write outcome reported yet")
    if outcome.get("ok", True):
        return Check("writes", True, "the worker's latest write succeeded")
    since = outcome.get("since")
    for_how_long = (f" for {(time.time() if now is None else now) - float(since):.0f} s"
                    if isinstance(since, int | float) else "")
    return Check("writes", False, f"the worker cannot write{for_how_long}: {outcome.get('error')}")


def check_redis(url: str, timeout_s: float = TIMEOUT_S) -> Check:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        try:
            client.ping()
            full = redis_full(client.info("memory"))
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return Check("redis", False, f"{safe_url(url)}: {_first_line(exc)}")
    if full:
        return Check("redis", False, f"{safe_url(url)}: {full}")
    return Check("redis", True, f"{safe_url(url)} answers")


def redis_full(memory: dict[str, Any]) -> str | None:
    """Why Redis refuses writes for lack of memory (from INFO memory), or None."""
    limit, used = int(memory.get("maxmemory") or 0), int(memory.get("used_memory") or 0)
    policy = str(memory.get("maxmemory_policy", ""))
    if limit <= 0 or used < limit or policy != "noeviction":
        return None
    return (f"Redis is full: {used:,} bytes used of maxmemory {limit:,} (noeviction), so workers cannot "
            "take messages and producers cannot send; raise maxmemory or purge dead letters")


def check_database(url: str, timeout_s: float = TIMEOUT_S) -> Check:
    """SELECT 1 (and, on PostgreSQL, whether it takes writes); a probe only looks: a SQLite file that is
    not there is a FAIL, never created."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from shared.database.migrate import missing_database
    from shared.errors import ConfigError

    try:
        problem = missing_database(url)
    except ConfigError as exc:
        return Check("database", False, str(exc))
    if problem:
        return Check("database", False, problem)
    connect_args = {"connect_timeout": int(max(1, timeout_s))} if url.startswith("postgresql") else {}
    try:
        engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                # SELECT 1 succeeds on a replica: ask whether this session could write at all.
                read_only = (connection.dialect.name == "postgresql" and
                             connection.execute(text("SHOW transaction_read_only")).scalar() == "on")
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return Check("database", False, f"{safe_url(url)}: {_first_line(exc)}")
    if read_only:
        return Check("database", False, f"{safe_url(url)} answers but is read-only (a replica, or "
                                        "default_transaction_read_only): the worker cannot write")
    return Check("database", True, f"{safe_url(url)} answers")


def run_checks(settings: Settings, *, liveness: bool = False) -> list[Check]:
    checks = [check_worker(settings.heartbeat_path, settings.heartbeat_max_age_s)]
    if not liveness:
        checks += [check_writes(settings.heartbeat_path), check_redis(settings.redis_url),
                   check_database(settings.db_url)]
    return checks
