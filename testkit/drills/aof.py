"""Read a Redis append-only file back, to tell where a lost message went.

With AOF on, every write reaches the file before its reply: the producer's
LPUSH, the worker's move to the in-flight list (BLMOVE is written as LMOVE),
the HSET that records the message as unacknowledged with the LREM that takes
it out of flight, its HDEL at the ack, and the push back of a restore.
Replaying them shows, for a post id, which of these happened — e.g. "pushed,
moved to in-flight, Redis went down": where a message was when Redis went away.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def size(paths: list[Path]) -> int:
    """Bytes in the files so far: a mark to place an event (a restart) among the commands."""
    return sum(path.stat().st_size for path in paths if path.exists())


def commands(paths: list[Path]) -> Iterator[tuple[int, list[bytes]]]:
    """(offset, RESP array) from the files in order; offsets count bytes across the files."""
    base = 0
    for path in paths:
        data = path.read_bytes()
        i = 0
        while i < len(data):
            if data[i:i + 1] != b"*":
                i = data.index(b"\n", i) + 1  # a stray line (annotation, truncated tail)
                continue
            end = data.index(b"\r\n", i)
            count = int(data[i + 1:end])
            i = end + 2
            parts = []
            start = i
            for _ in range(count):
                end = data.index(b"\r\n", i)
                length = int(data[i + 1:end])
                parts.append(data[end + 2:end + 2 + length])
                i = end + 2 + length + 2
            yield base + start, parts
        base += len(data)


def post_id(message: bytes) -> str | None:
    """The post id inside a Celery message as kombu stores it (envelope, base64 body)."""
    try:
        envelope = json.loads(message)
        if isinstance(envelope, list):  # an unacked entry: [message, exchange, routing key]
            envelope = envelope[0]
        args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
        payload: Any = kwargs or (args[0] if len(args) == 1 else {"id": args[0]} if args else {})
        return str(payload.get("id")) if isinstance(payload, dict) else None
    except Exception:  # noqa: BLE001 - not a task message
        return None


def history(paths: list[Path], queue: str, ids: set[str], marks: list[int] | None = None) -> dict[str, list[str]]:
    """For each id: the list operations and unacked records it went through, numbered by command.

    `marks` are AOF sizes taken when Redis went down (see `size`): they show as "restart"
    events in the history of every id that is in flight at that moment.
    """
    lists: dict[bytes, deque[bytes]] = {}
    events: dict[str, list[str]] = {i: [] for i in ids}
    unacked_tags: dict[bytes, str] = {}
    pending = sorted(marks or [])
    for n, (offset, parts) in enumerate(commands(paths)):
        while pending and offset >= pending[0]:
            pending.pop(0)
            for trail in events.values():
                if trail and not trail[-1].startswith(("acked", "restart")):
                    trail.append(f"Redis went down before #{n}")
        name = parts[0].upper()
        if name in (b"LPUSH", b"RPUSH"):
            target = lists.setdefault(parts[1], deque())
            for value in parts[2:]:
                (target.appendleft if name == b"LPUSH" else target.append)(value)
                found = post_id(value)
                if found in events:
                    what = "pushed" if parts[1].decode() == queue else f"pushed to {parts[1].decode()}"
                    events[found].append(f"{what} #{n}")
        elif name in (b"RPOP", b"LPOP"):
            target = lists.setdefault(parts[1], deque())
            times = int(parts[2]) if len(parts) > 2 else 1
            for _ in range(min(times, len(target))):
                value = target.pop() if name == b"RPOP" else target.popleft()
                found = post_id(value)
                if found in events:
                    events[found].append(f"popped #{n}")
        elif name == b"LMOVE":
            source, target = lists.setdefault(parts[1], deque()), lists.setdefault(parts[2], deque())
            if source:
                value = source.pop() if parts[3].upper() == b"RIGHT" else source.popleft()
                (target.appendleft if parts[4].upper() == b"LEFT" else target.append)(value)
                found = post_id(value)
                if found in events:
                    events[found].append(f"moved to {parts[2].decode(errors='replace')} #{n}")
        elif name == b"LREM":
            target = lists.setdefault(parts[1], deque())
            if parts[3] in target:
                target.remove(parts[3])
                found = post_id(parts[3])
                if found in events:
                    events[found].append(f"out of {parts[1].decode(errors='replace')} #{n}")
        elif name == b"HSET" and parts[1] == b"unacked":
            for tag, value in zip(parts[2::2], parts[3::2], strict=True):
                found = post_id(value)
                if found in events:
                    unacked_tags[tag] = found
                    events[found].append(f"recorded unacked #{n}")
        elif name == b"HDEL" and parts[1] == b"unacked":
            for tag in parts[2:]:
                found = unacked_tags.pop(tag, None)
                if found in events:
                    events[found].append(f"acked or restored #{n}")
    for key, values in lists.items():
        for value in values:
            found = post_id(value)
            if found in events:
                events[found].append(f"still in {key.decode()}")
    return events

