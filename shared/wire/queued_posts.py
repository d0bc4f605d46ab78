"""The ids of the posts still waiting in a queue, read from Redis: what a resumed backfill must not resend.

A post waits in one of the places shared/wire/backlog.py names: the queue's list and its
priority lists, the in-flight list, kombu's `unacked` hash (shared by every queue of the
db: only the records of this queue count) and the delayed set. This copies messages, so
it is for a one-off command (`topicq backfill`), never a scrape: each place is read in
pages of PAGE entries, and a message that cannot be decoded is simply not counted.

The places are read in the order a message moves through them (list, in flight, unacked,
delayed), so one that moves during the read is still seen; pages count from the list's
head, where producers push, so a push meanwhile repeats entries and never skips one. A
message put back on the list during the read (a delayed one come due, an unacked one
restored) can be missed and its posts sent again: a duplicate row write, not a lost post.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from shared.redis_keys import UNACKED, delayed_key, inflight_key, ready_keys
from shared.wire.backlog import held_message
from shared.wire.envelope import body_post_ids

PAGE = 500  # messages read at once (a backfill chunk can hold a few hundred posts each)


def queued_post_ids(client: Any, queue: str) -> set[str]:
    """Ids of the posts in every message that waits in `queue` now; Redis errors are the caller's."""
    ids: set[str] = set()
    for message in _messages(client, queue):
        ids.update(post_ids(message))
    return ids


def _messages(client: Any, queue: str) -> Iterator[Any]:
    for key in [*ready_keys(queue), inflight_key(queue)]:
        start = 0
        while page := client.lrange(key, start, start + PAGE - 1):
            yield from (_load(raw) for raw in page)
            start += PAGE
    for _, raw in client.hscan_iter(UNACKED, count=PAGE):
        message = held_message(raw, queue)
        if message is not None:
            yield message
    for raw, _ in client.zscan_iter(delayed_key(queue), count=PAGE):
        yield _load(raw)


def _load(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def post_ids(message: Any) -> list[str]:
    """The post ids of a Celery message topicq's producers send: one post's kwargs, or a chunk's posts."""
    if not isinstance(message, dict) or not isinstance(message.get("body"), str):
        return []
    try:
        body = json.loads(base64.b64decode(message["body"]))
    except ValueError:
        return []
    return body_post_ids(body)
