"""Celery protocol-2 messages built by hand, the way a service in another language sends posts
(README, "Any language"): json + base64 and a bare Redis client, no Celery, no kombu."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

CLASSIFY = "topicq.classify"
CLASSIFY_CHUNK = "topicq.classify_chunk"
NO_LINKS = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def body_of(args: list[Any] | None = None, kwargs: dict[str, Any] | None = None,
            embed: dict[str, Any] | None = None) -> bytes:
    return json.dumps([args or [], kwargs or {}, NO_LINKS if embed is None else embed]).encode()


def envelope(task: str = CLASSIFY, *, kwargs: dict[str, Any] | None = None, args: list[Any] | None = None,
             queue: str = "topicq", body: bytes | None = None,
             content_type: str = "application/json") -> dict[str, Any]:
    """The message as a dict, for a caller to break one field of before `encode`."""
    task_id = str(uuid.uuid4())
    raw_body = body if body is not None else body_of(args, kwargs)
    return {
        "body": base64.b64encode(raw_body).decode(),
        "content-encoding": "utf-8" if content_type == "application/json" else "binary",
        "content-type": content_type,
        "headers": {"lang": "js", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
                    "group": None, "retries": 0, "eta": None, "expires": None},
        "properties": {"correlation_id": task_id, "delivery_mode": 2, "delivery_tag": str(uuid.uuid4()),
                       "body_encoding": "base64", "priority": 0,
                       "delivery_info": {"exchange": "", "routing_key": queue}},
    }


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message)


def raw_message(task: str, kwargs: dict[str, Any], queue: str, content_type: str = "application/json",
                body: bytes | None = None) -> str:
    """A complete message, ready to LPUSH onto the queue's list."""
    return encode(envelope(task, kwargs=kwargs, queue=queue, body=body, content_type=content_type))
