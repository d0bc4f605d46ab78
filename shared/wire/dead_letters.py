"""The dead-letter list: messages a worker could not take, kept whole, with the reason and time.

A list entry that is not a well-formed topicq message (shared/wire/envelope.py) is
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

The post ids of a dead letter get `rejected` rows: the worker that moved it records
them (worker/rejected_posts.py, through the transport's event hook).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import redis_keys

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
