"""Thin Celery tasks: decode the message, call the pipeline, send retries.

Never let an exception escape a batch: celery-batches acknowledges late-ack
messages even when the batch function raises. Posts to retry are sent again
(same task id, the attempt count + 1 in the ATTEMPT_HEADER header, a
countdown) *before* the batch returns and is acknowledged, so a crash in
between can only duplicate, never lose.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery_batches import Batches, SimpleRequest

from shared.settings import Settings
from worker.payload import Post, payload_from_call
from worker.pipeline import BatchReport, process
from worker.protocol import ATTEMPT_HEADER, CLASSIFY_CHUNK_TASK, CLASSIFY_TASK
from worker.runtime import get_runtime

log = logging.getLogger(__name__)


def _attempt(headers: dict[str, Any] | None) -> int:
    """Deliveries before this one, from the header workers set (the transport checked its range)."""
    value = (headers or {}).get(ATTEMPT_HEADER)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _run(payloads: list[Any], attempts: list[int], settings: Settings) -> BatchReport:
    runtime = get_runtime(settings)
    try:
        return process(payloads, settings=settings, embedder=runtime.embedder, models=runtime.models,
                       cache_embeddings=settings.cache_embeddings, attempts=attempts)
    except Exception:  # a bug must not cost posts: send them all again, later
        log.exception("unexpected error in a batch of %d posts; sending them again", len(payloads))
        report = BatchReport(retry_delay_s=settings.retry_max_s)
        for raw, attempt in zip(payloads, attempts, strict=True):
            try:
                post = Post.model_validate(raw).delivered(attempt + 1)
            except Exception:  # noqa: BLE001 - invalid posts are dropped only after logging
                log.error("dropping unparseable payload after an unexpected error")
                continue
            if post.attempt < settings.max_retries:  # bounded: a bug cannot loop a post forever
                report.retry.append(post)
            else:
                log.error("dropping post %s after %d attempts that each hit an unexpected error",
                          ascii(post.id), post.attempt)
        return report


class ReconnectSafeBatches(Batches):
    """Batches whose flush timer survives a broker reconnect.

    Celery clears the event loop's timers when the broker connection is lost, but
    celery-batches keeps its reference to the cleared flush timer and never starts a
    new one: a tail shorter than a batch would then wait forever. Celery builds the
    strategy again on every (re)connect, so forget the old timer there.
    """

    def Strategy(self, task: Task, app: Celery, consumer: Any) -> Any:  # noqa: N802 - Celery's name
        self._tref = None
        return super().Strategy(task, app, consumer)


def register_tasks(app: Celery, settings: Settings) -> None:
    @app.task(name=CLASSIFY_TASK, base=ReconnectSafeBatches, bind=True, acks_late=True,
              flush_every=settings.batch_size, flush_interval=settings.batch_wait_s)
    def classify(self: Task, requests: list[SimpleRequest]) -> None:
        payloads = [payload_from_call(r.args, r.kwargs) for r in requests]
        attempts = [_attempt(r.request_dict) for r in requests]
        report = _run(payloads, attempts, settings)
        if report.retry or report.resend:
            ids = {str(payload.get("id")): r.id for r, payload in zip(requests, payloads, strict=True)
                   if isinstance(payload, dict)}
            for post in report.retry:
                self.apply_async(kwargs=post.to_message(), task_id=ids.get(post.id),
                                 countdown=report.retry_delay_s, headers={ATTEMPT_HEADER: post.attempt})
            for raw in report.resend:
                self.apply_async(kwargs=raw, task_id=ids.get(str(raw.get("id"))),
                                 countdown=report.retry_delay_s)

    @app.task(name=CLASSIFY_CHUNK_TASK, bind=True, acks_late=True)
    def classify_chunk(self: Task, posts: list[Any]) -> None:
        if not isinstance(posts, list):
            log.error("classify_chunk expects a list of posts, got %s", type(posts).__name__)
            return
        attempt = _attempt(self.request.__dict__)
        report = _run(posts, [attempt] * len(posts), settings)
        # One message per attempt count: the header holds one number for the whole chunk.
        by_attempt: dict[int, list[Any]] = {}
        for post in report.retry:
            by_attempt.setdefault(post.attempt, []).append(post.to_message())
        if report.resend:
            by_attempt.setdefault(attempt, []).extend(report.resend)
        for count, chunk in sorted(by_attempt.items()):
            self.apply_async(kwargs={"posts": chunk}, countdown=report.retry_delay_s,
                             headers={ATTEMPT_HEADER: count})
