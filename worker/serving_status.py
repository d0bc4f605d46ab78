"""What each worker serves, and which version it refused and why, kept in Redis for `models` and `stats`.

A worker writes its state (one small key per worker, with a TTL) each time it
re-reads the alias (every MODEL_REFRESH_S, idle or not), so a promotion the
workers cannot follow shows up where people look instead of only in a worker's
log. A worker that dies drops out of the listing by itself after the TTL; one
that stops clears its key.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from shared import redis_keys

log = logging.getLogger(__name__)

KEY_PREFIX = redis_keys.SERVING_PREFIX
TTL_S = 600  # a running worker rewrites its key every MODEL_REFRESH_S; a dead one vanishes after this
TIMEOUT_S = 1.0  # status is worth a second, never a hung command or worker


@dataclass(frozen=True)
class ServingState:
    serving: str | None  # NAME:VERSION, None before the first model loads
    refused: str | None = None  # NAME:VERSION the alias points to that this worker cannot serve
    reason: str | None = None
    worker: str = ""
    queue: str = ""
    at: str = ""

    def describe(self) -> str:
        line = f"worker {self.worker} (queue {self.queue!r}) serves {self.serving or 'nothing'}"
        if self.refused:
            line += f" and refuses {self.refused} since {self.at}: {self.reason}"
        return line


def _client(redis_url: str) -> Any:
    import redis

    return redis.Redis.from_url(redis_url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)


class StatusReporter:
    """Records a worker's ServingState in Redis; a Redis hiccup costs a log line, never a batch."""

    def __init__(self, redis_url: str, queue: str, worker: str | None = None) -> None:
        self.redis_url = redis_url
        self.queue = queue
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, state: ServingState) -> None:
        stamped = ServingState(serving=state.serving, refused=state.refused, reason=state.reason,
                               worker=self.worker, queue=self.queue,
                               at=state.at or datetime.now(UTC).isoformat(timespec="seconds"))
        try:
            client = _client(self.redis_url)
            try:
                client.set(f"{KEY_PREFIX}{self.queue}:{self.worker}", json.dumps(asdict(stamped)), ex=TTL_S)
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - status is best effort
            log.debug("cannot record the worker's status in Redis: %s", exc)


    def clear(self) -> None:
        """Drop this worker's line when it stops, so listings show only running workers."""
        try:
            client = _client(self.redis_url)
            try:
                client.delete(f"{KEY_PREFIX}{self.queue}:{self.worker}")
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - status is best effort; the TTL ends it anyway
            log.debug("cannot clear the worker's status in Redis: %s", exc)


def worker_states(redis_url: str, *, model_name: str | None = None) -> list[ServingState]:
    """The states workers recorded in the last TTL_S, of one model's workers or all; [] when Redis is down."""
    try:
        client = _client(redis_url)
        try:
            keys = sorted(client.scan_iter(match=f"{KEY_PREFIX}*", count=1000))
            raw = client.mget(keys) if keys else []
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - listing models must work without Redis
        log.debug("cannot read worker status from Redis: %s", exc)
        return []
    states = [ServingState(**json.loads(value)) for value in raw if value]
    return [s for s in states
            if model_name is None or (s.serving or s.refused or "").partition(":")[0] == model_name]
