"""The dead-letter list: messages a worker could not take, kept whole, with the reason and time.

A list entry that is not a well-formed topicq message (worker/envelope.py) is
moved to the Redis list `<queue>.dead` (e.g. `topicq.dead`) in the same MULTI
that takes it out of the in-flight list, so it is never lost and never comes
back on its own. Each entry is JSON:

    {"reason": "...", "at": "2026-11-30T15:04:05+00:00", "queue": "topicq",
     "post_ids": ["p-1"], "message": "<the list entry as it was>"}

(`message_base64` instead of `message` when the entry was not UTF-8.) The list
keeps the newest DEAD_LETTER_MAX entries. `topicq dead-letters` lists, counts,
re-sends and purges them.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

SUFFIX = ".dead"


def dead_letter_key(queue: str) -> str:
    return f"{queue}{SUFFIX}"


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


def resend(client: Any, queue: str, limit: int | None = None) -> int:
    """Put the oldest `limit` dead letters (all when None) back on the queue, unchanged; how many."""
    key, moved = dead_letter_key(queue), 0
    while limit is None or moved < limit:
        entry = client.lindex(key, -1)  # the oldest first, as they arrived
        if entry is None:
            break
        try:
            letter = DeadLetter.parse(entry)
        except (ValueError, KeyError, TypeError):
            log.error("a dead-letter entry is not a topicq record; left in %s: %r", key, entry[:80])
            break
        with client.pipeline() as pipe:  # MULTI: out of the dead letters and onto the queue at once
            pipe.lrem(key, -1, entry).lpush(letter.queue or queue, letter.raw)
            pipe.execute()
        moved += 1
    return moved


def purge(client: Any, queue: str) -> int:
    key = dead_letter_key(queue)
    with client.pipeline() as pipe:
        pipe.llen(key).delete(key)
        removed, _ = pipe.execute()
    return int(removed)


def record_rejected(post_ids: list[str], reason: str) -> None:
    """Write a `rejected` row for each post id recovered from a dead letter (worker processes only)."""
    from shared.settings import get_settings
    from worker.pipeline import reject_ids
    from worker.runtime import get_runtime

    settings = get_settings()
    reject_ids(post_ids, f"message refused: {reason}", settings=settings,
               models=get_runtime(settings).models)
