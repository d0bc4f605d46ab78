"""Thin Celery tasks: decode the message, call the pipeline, send retries.

Never let an exception escape a batch: celery-batches acknowledges late-ack
messages even when the batch function raises. Posts to retry are sent again
(same task id, the attempt count in ATTEMPT_HEADER, a countdown of at most one
RetryPolicy step, the due time in DUE_HEADER when the wait is longer) *before*
the batch returns and is acknowledged, so a crash in between can only
duplicate, never lose. A message that arrives before its due time (on transports
that do not park it: shared/wire/transport.py does) is passed on unprocessed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task
from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task
from sqlalchemy.exc import DBAPIError

from shared.database.results import ResultRow, Status, write_rows
from shared.errors import DatabaseUnavailableError
from shared.settings import Settings
from shared.wire.payload import Post, payload_from_call
from shared.wire.protocol import (
    ATTEMPT_HEADER,
    CLASSIFY_CHUNK_TASK,
    CLASSIFY_TASK,
    DUE_HEADER,
    SENT_AT_HEADER,
)
from worker import heartbeat, metrics
from worker.pipeline import BatchReport, process
from worker.retry_policy import RetryPolicy
from worker.worker_state import get_worker_state

log = logging.getLogger(__name__)


def _attempt(headers: dict[str, Any] | None) -> int:
    """Deliveries before this one, from the header workers set (the transport checked its range)."""
    value = (headers or {}).get(ATTEMPT_HEADER)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _seconds(headers: dict[str, Any] | None, name: str) -> float | None:
    """An epoch-seconds header (due time, send stamp); None when absent or not a number (the
    transport already removed a send stamp that is not epoch seconds)."""
    value = (headers or {}).get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _due(headers: dict[str, Any] | None) -> float:
    return _seconds(headers, DUE_HEADER) or 0.0


def _sent_at(headers: dict[str, Any] | None) -> float | None:
    return _seconds(headers, SENT_AT_HEADER)


# A message this close to its due time is processed rather than passed on once more.
DUE_SLACK_S = 0.5


@dataclass(frozen=True)
class Message:
    """A message a task sends (again): its kwargs, the deliveries it carries, its task id (a post keeps
    its own) and its first send time (latency counts every round)."""

    kwargs: dict[str, Any]
    attempt: int
    task_id: str | None = None
    sent_at: float | None = None


class Resender:
    """Sends one task's messages again: those that came before their due time, and those a batch hands
    back, due `retry_delay_s` after it was taken up."""

    def __init__(self, task: Task, policy: RetryPolicy) -> None:
        self.task, self.policy = task, policy

    def early(self, message: Message, headers: dict[str, Any] | None, now: float) -> bool:
        """Pass `message` on unprocessed when it came before its due time (a long wait, taken in steps)."""
        due = _due(headers)
        if due <= now + DUE_SLACK_S:
            return False
        self.send(message, due_at=due)
        return True

    def send(self, message: Message, *, due_at: float) -> None:
        headers: dict[str, Any] = {ATTEMPT_HEADER: message.attempt}
        if message.sent_at is not None:
            headers[SENT_AT_HEADER] = message.sent_at
        countdown = self.policy.countdown(due_at)
        if due_at - time.time() > countdown + DUE_SLACK_S:
            headers[DUE_HEADER] = due_at  # longer than one step: passed on until due
        self.task.apply_async(kwargs=message.kwargs, task_id=message.task_id, countdown=countdown,
                              headers=headers)

    def hand_back(self, messages: list[Message], report: BatchReport, taken_at: float) -> None:
        """Send what the batch hands back (retries, resends) before it is acknowledged: a crash in
        between can only duplicate them."""
        for message in messages:
            self.send(message, due_at=taken_at + report.retry_delay_s)


def _run(payloads: list[Any], attempts: list[int], settings: Settings) -> BatchReport:
    runtime = get_worker_state(settings)
    try:
        # No embedder of its own: each batch takes the served version and its embedder together.
        report = process(payloads, settings=settings, models=runtime.models,
                         cache_embeddings=settings.cache_embeddings, attempts=attempts,
                         followers=runtime.followers)
    except Exception as exc:  # a bug must not cost posts: send them all again, later
        report = _after_unexpected(exc, payloads, attempts, settings, runtime)
    _note_database(report)
    return report


def _note_database(report: BatchReport) -> None:
    """What `topicq health` and topicq_database_writable say: the outcome of this batch's write."""
    if report.retry_reason == "database_unavailable":
        heartbeat.DATABASE_WRITES.failed(report.error or "the database refused the write")
    elif report.written:
        heartbeat.DATABASE_WRITES.succeeded()


def _database_fault(exc: BaseException) -> bool:
    """Whether the database (not the posts) is behind `exc`, wherever in its chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DatabaseUnavailableError | DBAPIError):
            return True
        current = current.__cause__ or current.__context__
    return False


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def _after_unexpected(exc: Exception, payloads: list[Any], attempts: list[int], settings: Settings,
                      runtime: Any) -> BatchReport:
    """Every post goes round again or gets a `failed` row: never dropped. A database error the
    boundary did not sort is still the database's, not the posts': no attempt is spent on it."""
    if _database_fault(exc):
        log.error("the database refused a batch of %d posts (%s); sending them again without spending "
                  "an attempt", len(payloads), _one_line(exc))
        report = BatchReport(retry_delay_s=RetryPolicy(settings).outage().delay_s, error=_one_line(exc),
                             retry_reason="database_unavailable")
        spend = 0
    else:
        log.exception("unexpected error in a batch of %d posts; sending them again", len(payloads))
        report = BatchReport(retry_delay_s=settings.retry_max_s, error=_one_line(exc),
                             retry_reason="unexpected")
        spend = 1
    spent: list[Post] = []
    for raw, attempt in zip(payloads, attempts, strict=True):
        try:
            post = Post.model_validate(raw).delivered(attempt + spend)
        except Exception:  # noqa: BLE001 - invalid posts are dropped only after logging
            if not spend and isinstance(raw, dict):  # its `rejected` row waits for the database too
                report.resend.append(raw)
                continue
            log.error("dropping unparseable payload after an unexpected error")
            continue
        if spend and post.attempt >= settings.max_retries:  # bounded: a bug cannot loop a post forever
            spent.append(post)
        else:
            report.retry.append(post)
    if spent:
        _record_failed(report, spent, exc, settings, runtime)
    return report


def _record_failed(report: BatchReport, posts: list[Post], exc: Exception, settings: Settings,
                   runtime: Any) -> None:
    """`failed` rows for posts out of attempts (retry-failed sends them again); when even those cannot
    be written the posts go round again rather than vanish."""
    try:
        model = runtime.models.current()
        name, version = model.meta.name, model.meta.version
    except Exception:  # noqa: BLE001 - no model to name: version 0, as the pipeline records it
        name, version = settings.model_name, 0
    rows = [ResultRow(post_id=post.id, model_name=name, model_version=version, status=Status.FAILED,
                      error=f"gave up after {post.attempt} attempts that each hit an unexpected error: "
                            f"{_one_line(exc)}",
                      attempts=post.attempt, metadata=post.metadata or None, text=post.text)
            for post in posts]
    try:
        write_rows(settings.db_url, rows)
    except Exception as write_exc:  # noqa: BLE001 - the database too: keep them going round
        log.error("could not record %d posts failed (%s); sending them again", len(rows),
                  _one_line(write_exc))
        report.retry += posts
        return
    report.written += rows
    for post in posts:
        log.error("post %s recorded failed after %d attempts that each hit an unexpected error",
                  ascii(post.id), post.attempt)


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

    def flush(self, requests: Any) -> Any:
        """celery-batches' flush, with the late acks of a batch sent to Redis in one MULTI rather than
        one each (the transport's `ack_many`); each request is then acknowledged as before."""
        requests = list(requests)
        late = [r for r in requests if r.task.acks_late]
        early = [r for r in requests if not r.task.acks_late]
        serializable = ([SimpleRequest.from_request(r) for r in requests],)

        def on_accepted(pid: int, time_accepted: float) -> None:
            for request in early:
                request.acknowledge()

        def on_return(result: Any) -> None:
            _remove_unacked_records(late)
            for request in late:
                request.acknowledge()

        return self._pool.apply_async(apply_batches_task, (self, serializable, 0, None),
                                      accept_callback=on_accepted, callback=on_return)


def _remove_unacked_records(requests: list[Any]) -> None:
    """One MULTI for the unacked records of `requests`, on a transport that can (shared/wire/transport.py);
    when it cannot, or Redis fails it, each request's own ack removes its record."""
    pending = [r.message for r in requests if not r.acknowledged]
    if not pending:
        return
    ack_many = getattr(getattr(pending[0].channel, "qos", None), "ack_many", None)
    if ack_many is None or any(m.channel is not pending[0].channel for m in pending):
        return
    try:
        ack_many([m.delivery_tag for m in pending])
    except Exception as exc:  # noqa: BLE001 - the acks one by one follow, and say what fails
        log.warning("could not acknowledge a batch of %d messages at once (%s); one by one instead",
                    len(pending), exc)


def register_tasks(app: Celery, settings: Settings) -> None:
    """The two tasks, bound to `settings`, on `app` only (not shared: Celery would otherwise add
    them, with these settings, to every app made later in this process)."""
    policy = RetryPolicy(settings)

    @app.task(name=CLASSIFY_TASK, base=ReconnectSafeBatches, bind=True, acks_late=True, shared=False,
              flush_every=settings.batch_size, flush_interval=settings.batch_wait_s)
    def classify(self: Task, requests: list[SimpleRequest]) -> None:
        now, resender = time.time(), Resender(self, policy)
        ready = []  # each message's payload, read once
        for r in requests:
            message = Message(payload_from_call(r.args, r.kwargs), _attempt(r.request_dict), r.id,
                              _sent_at(r.request_dict))
            if not resender.early(message, r.request_dict, now):
                ready.append(message)
        if not ready:
            return
        payloads = [message.kwargs for message in ready]
        metrics.taken_up(len(ready), len(payloads))
        report = _run(payloads, [message.attempt for message in ready], settings)
        ids = {str(m.kwargs.get("id")): m.task_id for m in ready if isinstance(m.kwargs, dict)}
        stamps = {str(m.kwargs.get("id")): m.sent_at for m in ready
                  if isinstance(m.kwargs, dict) and m.sent_at is not None}
        metrics.batch_done(report, len(payloads), stamps)
        # Each post in a message of its own, under its task id; a resent one starts its count again.
        back = [(post.to_message(), post.attempt, post.id) for post in report.retry]
        back += [(raw, 0, str(raw.get("id"))) for raw in report.resend]
        resender.hand_back([Message(kwargs, attempt, ids.get(post_id), stamps.get(post_id))
                            for kwargs, attempt, post_id in back], report, now)

    @app.task(name=CLASSIFY_CHUNK_TASK, bind=True, acks_late=True, shared=False)
    def classify_chunk(self: Task, posts: list[Any]) -> None:
        if not isinstance(posts, list):
            log.error("classify_chunk expects a list of posts, got %s", type(posts).__name__)
            return
        headers, now, resender = self.request.__dict__, time.time(), Resender(self, policy)
        attempt, sent_at = _attempt(headers), _sent_at(headers)
        if resender.early(Message({"posts": posts}, attempt, sent_at=sent_at), headers, now):
            return
        if len(posts) > settings.max_chunk_posts:  # the producer's choice; bounded before any work
            size = settings.max_chunk_posts
            for start in range(0, len(posts), size):
                resender.send(Message({"posts": posts[start:start + size]}, attempt, sent_at=sent_at),
                              due_at=now)
            log.info("split a chunk of %d posts into chunks of at most %d (MAX_CHUNK_POSTS)",
                     len(posts), size)
            return
        metrics.taken_up(1, len(posts))
        report = _run(posts, [attempt] * len(posts), settings)
        metrics.batch_done(report, len(posts), {} if sent_at is None else
                           {str(p.get("id")): sent_at for p in posts if isinstance(p, dict)})
        # One message per attempt count: the header holds one number for the whole chunk.
        by_attempt: dict[int, list[Any]] = {}
        for post in report.retry:
            by_attempt.setdefault(post.attempt, []).append(post.to_message())
        if report.resend:
            by_attempt.setdefault(attempt, []).extend(report.resend)
        resender.hand_back([Message({"posts": chunk}, count, sent_at=sent_at)
                            for count, chunk in sorted(by_attempt.items())], report, now)
