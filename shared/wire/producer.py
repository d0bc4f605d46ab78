"""The producer side: validate posts, then send them to the queue.

    from shared.wire.producer import enqueue, enqueue_many
    enqueue("post-1", "NASA's new rocket ...", source="forum")

Bad posts are refused here with InvalidPostError, before they reach a worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from celery import Celery

from shared.errors import InvalidPostError, TransientError
from shared.settings import Settings, get_settings
from shared.wire.celery_config import celery_config
from shared.wire.payload import Post, parse_post
from shared.wire.protocol import CLASSIFY_CHUNK_TASK, CLASSIFY_TASK, SENT_AT_HEADER


class Producer:
    """Sends posts by task name; needs only the broker, not the worker's code or models."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.app = Celery("topicq-producer", set_as_current=False)
        self.app.conf.update(celery_config(self.settings))

    def validate(self, post_id: Any, text: Any, metadata: dict[str, Any] | None = None) -> Post:
        raw = {"id": post_id, "text": text, "metadata": metadata or {}}
        return parse_post(raw, max_text_chars=self.settings.max_text_chars,
                          max_metadata_bytes=self.settings.max_metadata_bytes)

    def send(self, post: Post) -> str:
        result = self.app.send_task(CLASSIFY_TASK, kwargs=post.to_message(), queue=self.settings.queue,
                                    headers={SENT_AT_HEADER: time.time()}, **_reprs([post]))
        return str(result.id)

    def send_chunk(self, posts: list[Post]) -> str:
        result = self.app.send_task(CLASSIFY_CHUNK_TASK, kwargs={"posts": [p.to_message() for p in posts]},
                                    queue=self.settings.queue, headers={SENT_AT_HEADER: time.time()},
                                    **_reprs(posts))
        return str(result.id)

    def close(self) -> None:
        self.app.close()


def _reprs(posts: list[Post]) -> dict[str, str]:
    """What monitors show of the call (Celery's argsrepr and kwargsrepr headers): the post ids, not a
    second copy of each text in every message. It also spares Celery's own repr of the kwargs, the
    costliest step of a send."""
    ids = ", ".join(repr(post.id) for post in posts[:3]) + (", ..." if len(posts) > 3 else "")
    kwargs = f"{{'id': {ids}}}" if len(posts) == 1 else f"{{'posts': <{len(posts)} posts: {ids}>}}"
    return {"argsrepr": "()", "kwargsrepr": kwargs}


def check_broker(redis_url: str, timeout_s: float = 2.0) -> None:
    """Fail within `timeout_s`, naming the URL, when Redis does not answer.

    A send retries an unreachable broker for BROKER_RETRY_S (a restart is worth waiting
    out mid-run); a command that finds Redis down before its first send should say so now.
    """
    import redis

    from shared.database.connection import safe_url

    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    except ValueError:  # a scheme redis-py does not know: leave the judgement to the transport
        return
    try:
        client.ping()
    except redis.RedisError as exc:
        raise TransientError(f"cannot reach Redis at {safe_url(redis_url)} ({exc}); "
                             "start it or set REDIS_URL") from None
    finally:
        client.close()


def chunked(items: Iterable[Post], size: int) -> Iterator[list[Post]]:
    chunk: list[Post] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def enqueue(post_id: str, text: str, *, settings: Settings | None = None, **metadata: Any) -> str:
    """Send one post; returns the message id. Raises InvalidPostError for a bad post."""
    producer = Producer(settings)
    try:
        return producer.send(producer.validate(post_id, text, metadata))
    finally:
        producer.close()


def enqueue_many(posts: Iterable[dict[str, Any]], *, settings: Settings | None = None) -> int:
    """Send many posts (`{"id", "text", "metadata"?}` dicts); all are validated before any is sent."""
    producer = Producer(settings)
    try:
        valid: list[Post] = []
        for number, raw in enumerate(posts, start=1):
            try:
                valid.append(producer.validate(raw.get("id"), raw.get("text"), raw.get("metadata")))
            except InvalidPostError as exc:
                raise InvalidPostError(f"post {number}: {exc}", post_id=exc.post_id) from None
        for post in valid:
            producer.send(post)
        return len(valid)
    finally:
        producer.close()
