"""Liveness without `celery inspect ping`: a heartbeat the worker's consumer loop refreshes.

A Celery consumer step puts `Heartbeat.beat` on the consumer's own timer, so
the beat stops when the event loop that takes messages stops: hung, or
reconnecting to a broker that is gone. Each beat stamps the time in memory
(for /healthz on the metrics port) and rewrites a small JSON file
(HEARTBEAT_FILE, for `topicq health` in the same container):

    {"at": 1764520000.1, "worker": "topicq@host", "queue": "topicq", "pid": 7,
     "serving": "topics:3", "embedder": "fake:bow:64",
     "database": {"ok": false, "error": "cannot use the database at ...", "since": 1764519990.0},
     "waiting": "for the database: ..."}

"serving" and "embedder" are what the worker serves at that beat (on
EMBEDDER=auto both change together when the alias moves). "database" is the
outcome of the worker's latest write (DATABASE_WRITES): a database that answers
SELECT 1 may still refuse every write (read-only after a failover, a table
missing), and only the worker's own writes tell. "waiting" is set while a
starting worker waits for what it needs before it can serve (the database).

A probe costs a file read, not the ~3 s of CPU and the broker round trip of a
ping that a long task can also make fail.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class WriteOutcome:
    """The outcome of the worker's latest database write, and since when writes fail."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ok, self.error, self.since = True, None, None  # type: bool, str | None, float | None

    def succeeded(self) -> None:
        with self._lock:
            if not self.ok:
                log.info("the database takes writes again (it refused them since %s s ago)",
                         f"{time.time() - (self.since or time.time()):.0f}")
            self.ok, self.error, self.since = True, None, None
        _gauge(True)

    def failed(self, error: str) -> None:
        with self._lock:
            self.error = error.strip().splitlines()[0][:300] if error.strip() else "write failed"
            if self.ok:
                self.since = time.time()
            self.ok = False
        _gauge(False)

    def record(self) -> dict[str, Any]:
        with self._lock:
            return {"ok": self.ok, "error": self.error, "since": self.since}


def _gauge(ok: bool) -> None:
    from worker import metrics

    metrics.database_writable(ok)


# This process's writes (the batches, the dead letters' rejected rows): what the heartbeat reports.
DATABASE_WRITES = WriteOutcome()


class Heartbeat:
    def __init__(self, path: Path, *, worker: str, queue: str, embedder: Callable[[], str | None],
                 serving: Callable[[], str | None] = lambda: None) -> None:
        self.path, self.worker, self.queue = path, worker, queue
        # Asked at each beat: a worker on EMBEDDER=auto swaps its embedder with its version.
        self.serving, self.embedder = serving, embedder
        self.last: float | None = None  # time.time() of the latest beat
        self.waiting: str | None = None  # what a starting worker waits for, and why

    def beat(self) -> None:
        self.last = time.time()
        record = {"at": self.last, "worker": self.worker, "queue": self.queue, "pid": os.getpid(),
                  "serving": self.serving(), "embedder": self.embedder(),
                  "database": DATABASE_WRITES.record()}
        if self.waiting:
            record["waiting"] = self.waiting
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            partial.write_text(json.dumps(record))
            partial.replace(self.path)  # a reader never sees half a file
        except OSError as exc:  # /healthz still knows; `topicq health` will say the file is stale
            log.warning("cannot write the heartbeat file %s: %s", self.path, exc)

    def age_s(self, now: float | None = None) -> float | None:
        return None if self.last is None else (time.time() if now is None else now) - self.last

    def remove(self) -> None:
        """A worker that stops takes its heartbeat with it: a probe must not find an old one fresh."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass


def read_heartbeat(path: Path) -> dict[str, Any] | None:
    """The latest beat written to `path`, or None when there is none or it cannot be read."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("at"), int | float) else None


def consumer_step(heartbeat: Heartbeat, interval_s: float) -> type:
    """A Celery consumer bootstep that beats every `interval_s` on the consumer's timer.

    Celery starts consumer steps again after every broker reconnect (and clears the
    timer when the connection is lost), so the beat resumes with the consumer."""
    from celery import bootsteps

    class HeartbeatStep(bootsteps.StartStopStep):
        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.timer_ref: Any = None

        def start(self, consumer: Any) -> None:
            heartbeat.beat()
            self.timer_ref = consumer.timer.call_repeatedly(interval_s, heartbeat.beat)

        def stop(self, consumer: Any) -> None:
            if self.timer_ref is not None:
                self.timer_ref.cancel()
                self.timer_ref = None

        shutdown = stop

    return HeartbeatStep
