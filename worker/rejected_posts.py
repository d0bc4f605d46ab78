"""Rejected rows for the posts of dead letters, written by the worker that moved them (its transport's
event hook), and kept in `<queue>.dead.pending` while the database refuses them.

Every worker writes the pending rows (`PendingRejections`, every HEARTBEAT_INTERVAL_S) once the
database takes writes again: kept in Redis, they outlive a worker restart.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from shared import redis_keys
from shared.errors import DatabaseUnavailableError

log = logging.getLogger(__name__)

PENDING_BATCH = 200  # entries written per retry: bounded, the rest wait for the next one


# Rejected rows of dead letters that the database could not take yet (JSON entries, oldest last).
pending_key = redis_keys.pending_rejections_key


def _write_rejected(post_ids: list[str], reason: str) -> None:
    from shared.settings import get_settings
    from worker.pipeline import reject_ids
    from worker.worker_state import get_worker_state

    settings = get_settings()
    reject_ids(post_ids, reason, settings=settings, models=get_worker_state(settings).models)


@lru_cache(maxsize=4)
def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)


def record_rejected(post_ids: list[str], reason: str) -> None:
    """Write a `rejected` row for each post id recovered from a dead letter (worker processes only).

    Never raises: when the database cannot take the rows now, they are kept in `<queue>.dead.pending`
    and written by `flush_pending` (the worker retries every few seconds) once it can."""
    from shared.settings import get_settings
    from worker import heartbeat

    error = f"message refused: {reason}"
    try:
        _write_rejected(post_ids, error)
    except Exception as exc:  # noqa: BLE001 - the transport must go on; the rows wait in Redis
        if isinstance(exc, DatabaseUnavailableError):
            heartbeat.DATABASE_WRITES.failed(str(exc))
        settings = get_settings()
        key = pending_key(settings.queue)
        entry = json.dumps({"post_ids": post_ids, "reason": error,
                            "at": datetime.now(UTC).isoformat(timespec="seconds")})
        try:
            _redis(settings.redis_url).lpush(key, entry)
        except Exception as redis_exc:  # noqa: BLE001 - the message itself is safe in the dead letters
            log.error("could not record %d post(s) of a dead letter as rejected (%s), nor keep them for "
                      "later (%s); `topicq dead-letters` lists their ids", len(post_ids), exc, redis_exc)
            return
        log.warning("could not record %d post(s) of a dead letter as rejected yet (%s); kept in %r and "
                    "written once the database takes writes", len(post_ids), exc, key)
        return
    heartbeat.DATABASE_WRITES.succeeded()


def flush_pending(client: Any, queue: str, limit: int = PENDING_BATCH,
                  write: Callable[[list[str], str], None] | None = None) -> int:
    """Write the oldest pending rejected rows (at most `limit` entries); how many rows were written.

    Stops at the first entry the database cannot take (it stays, for the next call). Rows are upserts,
    so two workers writing the same entry, or a crash between write and removal, only write it twice."""
    from worker import heartbeat

    write = write or _write_rejected
    key, written = pending_key(queue), 0
    for _ in range(limit):
        entry = client.lindex(key, -1)
        if entry is None:
            break
        try:
            record = json.loads(entry)
            post_ids, reason = [str(pid) for pid in record["post_ids"]], str(record["reason"])
        except (ValueError, KeyError, TypeError):
            log.error("not a pending rejection, removed from %s: %r", key, entry[:200])
            client.lrem(key, -1, entry)
            continue
        try:
            write(post_ids, reason)
        except Exception as exc:  # noqa: BLE001 - still refused: the entry waits for the next call
            if isinstance(exc, DatabaseUnavailableError):
                heartbeat.DATABASE_WRITES.failed(str(exc))
            else:
                log.error("could not record %d post(s) of a dead letter as rejected: %s", len(post_ids), exc)
            break
        heartbeat.DATABASE_WRITES.succeeded()
        client.lrem(key, -1, entry)
        written += len(post_ids)
    if written:
        log.info("recorded %d post(s) of dead letters as rejected, kept while the database refused them",
                 written)
    return written


class PendingRejections:
    """A thread that writes the pending rejected rows every `interval_s` (each worker process runs one)."""

    def __init__(self, redis_url: str, queue: str, interval_s: float) -> None:
        self.redis_url, self.queue, self.interval_s = redis_url, queue, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pending-rejections", daemon=True)

    def start(self) -> PendingRejections:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                flush_pending(_redis(self.redis_url), self.queue)
            except Exception as exc:  # noqa: BLE001 - Redis away: the next round tries again
                log.debug("pending rejections not flushed: %s", exc)
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
