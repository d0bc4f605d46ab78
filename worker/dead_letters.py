"""The dead-letter list: messages a worker could not take, kept whole, with the reason and time.

A list entry that is not a well-formed topicq message (worker/envelope.py) is
moved to the Redis list `<queue>.dead` (e.g. `topicq.dead`) in the same MULTI
that takes it out of the in-flight list, so it is never lost and never comes
back on its own. Each entry is JSON:

    {"reason": "...", "at": "2026-11-30T15:04:05+00:00", "queue": "topicq",
     "post_ids": ["p-1"], "message": "<the list entry as it was>"}

(`message_base64` instead of `message` when the entry was not UTF-8.) The list
keeps the newest DEAD_LETTER_MAX entries. `topicq dead-letters` lists, counts,
re-sends and purges them. Each resend is counted in `<queue>.dead.resent` (sha1
of the message -> count): a message still broken comes back byte for byte, so a
plain resend skips it the next time (`--again` forces it).

The post ids of a dead letter get `rejected` rows (`record_rejected`, the
transport's hook). When the database cannot take them at that moment they wait
in `<queue>.dead.pending` as {"post_ids": [...], "reason": "...", "at": "..."}
and every worker writes them (`PendingRejections`, every HEARTBEAT_INTERVAL_S)
once it can: kept in Redis, they outlive a worker restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from shared import redis_keys
from shared.errors import DatabaseUnavailableError

log = logging.getLogger(__name__)

SUFFIX = redis_keys.DEAD_SUFFIX
dead_letter_key = redis_keys.dead_letter_key


def make_record(raw: bytes, *, reason: str, queue: str, post_ids: list[str]) -> str:
    record: dict[str, Any] = {"reason": reason, "at": datetime.now(UTC).isoformat(timespec="seconds"),
                              "queue": queue, "post_ids": post_ids}
    try:
        record["message"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["message_base64"] = base64.b64encode(raw).decode("ascii")
    return json.dumps(record)


@dataclass
class DeadLetter:
    reason: str
    at: str
    queue: str
    post_ids: list[str]
    raw: bytes  # the list entry, byte for byte

    @classmethod
    def parse(cls, entry: bytes) -> DeadLetter:
        record = json.loads(entry)
        raw = (record["message"].encode("utf-8") if "message" in record
               else base64.b64decode(record["message_base64"]))
        return cls(reason=record["reason"], at=record["at"], queue=record["queue"],
                   post_ids=list(record.get("post_ids") or []), raw=raw)

    def summary(self) -> dict[str, Any]:
        preview = self.raw[:120].decode("utf-8", errors="replace")
        return {"at": self.at, "reason": self.reason, "post_ids": self.post_ids, "bytes": len(self.raw),
                "message": preview + ("..." if len(self.raw) > 120 else "")}


def count(client: Any, queue: str) -> int:
    return int(client.llen(dead_letter_key(queue)))


def read(client: Any, queue: str, limit: int | None = None) -> list[DeadLetter]:
    """The newest `limit` dead letters (all when None), newest first."""
    entries = client.lrange(dead_letter_key(queue), 0, -1 if limit is None else limit - 1)
    return [DeadLetter.parse(entry) for entry in entries]


RESENT_TTL_S = 30 * 24 * 3600  # how long a resend is remembered (renewed by every resend)

# KEYS: dead list, target queue, resend counts. ARGV: entry, raw message, its sha1, ttl.
# Out of the dead letters and onto the queue at once, and only if still there: two resends at
# once never queue one entry twice.
_RESEND = """
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
return 1
"""


# How often each message was re-sent: a hash of sha1(raw message) -> count. The transport
# dead-letters a message that is still broken byte for byte as it was sent, so its count follows
# it back into the dead letters.
resent_key = redis_keys.resent_key


def _digest(raw: bytes) -> str:
    return hashlib.sha1(raw).hexdigest()


def resent_counts(client: Any, queue: str, letters: list[DeadLetter]) -> list[int]:
    """How often each of `letters` was re-sent before."""
    if not letters:
        return []
    counts = client.hmget(resent_key(queue), [_digest(letter.raw) for letter in letters])
    return [int(count or 0) for count in counts]


@dataclass
class ResendReport:
    moved: int = 0
    skipped: int = 0  # came back after an earlier resend: still broken (`again` sends them anyway)
    unreadable: int = 0  # not a topicq record: left where it is


def resend(client: Any, queue: str, limit: int | None = None, *, again: bool = False) -> ResendReport:
    """Put the oldest `limit` dead letters (all when None) back on the queue, unchanged.

    Ends whatever the workers do: it takes the entries present when it starts and moves each at
    most once. An entry that came back after an earlier resend (the message is still broken) is
    skipped unless `again`, so a plain resend never feeds the same broken messages round forever."""
    key, counts_key = dead_letter_key(queue), resent_key(queue)
    report = ResendReport()
    entries = list(reversed(client.lrange(key, 0, -1)))  # the oldest first, as they arrived
    script = client.register_script(_RESEND)
    for start in range(0, len(entries), 500):
        chunk = entries[start : start + 500]
        letters: list[tuple[bytes, DeadLetter]] = []
        for entry in chunk:
            try:
                letters.append((entry, DeadLetter.parse(entry)))
            except (ValueError, KeyError, TypeError):
                report.unreadable += 1
                log.error("a dead-letter entry is not a topicq record; left in %s: %r", key, entry[:80])
        counts = resent_counts(client, queue, [letter for _, letter in letters])
        for (entry, letter), count in zip(letters, counts, strict=True):
            if limit is not None and report.moved >= limit:
                return report
            if count and not again:
                report.skipped += 1
                continue
            report.moved += int(script(keys=[key, letter.queue or queue, counts_key],
                                       args=[entry, letter.raw, _digest(letter.raw), RESENT_TTL_S]))
    return report


def purge(client: Any, queue: str) -> int:
    key = dead_letter_key(queue)
    with client.pipeline() as pipe:
        pipe.llen(key).delete(key).delete(resent_key(queue))
        removed, _, _ = pipe.execute()
    return int(removed)


PENDING_BATCH = 200  # entries written per retry: bounded, the rest wait for the next one


# Rejected rows of dead letters that the database could not take yet (JSON entries, oldest last).
pending_key = redis_keys.pending_rejections_key


def _write_rejected(post_ids: list[str], reason: str) -> None:
    from shared.settings import get_settings
    from worker.pipeline import reject_ids
    from worker.runtime import get_runtime

    settings = get_settings()
    reject_ids(post_ids, reason, settings=settings, models=get_runtime(settings).models)


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
