"""The classify pipeline as plain functions: payloads in, result rows and retries out.

    validate -> preprocess -> embed (one call per batch, cached) -> classify -> rows

Nothing here knows Celery. `process` never raises for a single bad post or a
transient failure: it says which posts to record, which to send again
(and after how long), so the task that calls it can always acknowledge.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.database.connection import utcnow
from shared.database.results import ResultRow, Status, write_rows
from shared.errors import (
    ConfigError,
    InvalidPostError,
    ModelError,
    TopicqError,
    TransientError,
)
from shared.improvement.review import ReviewPolicy, flag_row, review_flags
from shared.model.embedders.base import Embedder
from shared.model.embedding_cache import CachedEmbedder
from shared.model.preprocess import preprocess
from shared.model.store import TopicModel
from shared.settings import Settings
from shared.wire.payload import Post, parse_post, storable_metadata
from worker import metrics
from worker.after_batch import AfterBatch
from worker.embedded_batch import EmbeddedBatch
from worker.retry_policy import RetryPolicy
from worker.served_model import ModelAndEmbedder, ServedModel

log = logging.getLogger(__name__)


@dataclass
class BatchReport:
    written: list[ResultRow] = field(default_factory=list)
    retry: list[Post] = field(default_factory=list)  # send again, attempt already increased
    # Invalid payloads whose `rejected` row could not be written: send again as they came.
    resend: list[dict[str, Any]] = field(default_factory=list)
    retry_delay_s: float = 0.0
    error: str | None = None
    classify_ms: float = 0.0  # embedding and classifying the valid posts
    model_name: str = ""  # the version this batch was served with (0: none could be)
    model_version: int = 0
    retry_reason: str | None = None  # why posts go round again (worker/metrics.py:retry_reason)


def classify_batch(posts: list[Post], embedder: Embedder, model: TopicModel, *,
                   cache_url: str | None = None, review: ReviewPolicy | None = None,
                   embedded: Callable[[EmbeddedBatch], None] | None = None,
                   defer_cache_store: bool = False) -> list[ResultRow]:
    """One embed call for the batch, then one row per post (done, or rejected by the embedder),
    flagged for review as `review` says. `embedded` is handed the batch's embeddings and rows, for
    the followers to reuse. `defer_cache_store`: the vectors new to the cache are not stored here but
    handed over in the EmbeddedBatch (`fresh`), for whoever writes the rows to store after them."""
    if not posts:
        return []
    batch_id = uuid.uuid4().hex
    texts = [preprocess(p.text) for p in posts]
    cached = CachedEmbedder(embedder, cache_url, store_now=not defer_cache_store) if cache_url else None
    started = time.perf_counter()
    outcome = (cached or embedder).embed_each(texts)
    embed_done = time.perf_counter()
    metrics.observe_embed(embedder.id, embed_done - started, hits=cached.stats.hits if cached else 0,
                          misses=cached.stats.misses if cached else 0)
    vectors, rejected = outcome.vectors, outcome.rejected
    # A model that reads words reads the posts as sent; rejected posts' rows are ignored.
    sent = [post.text for post in posts]
    probabilities = model.classifier.predict_proba(vectors, sent)
    metrics.observe_classify(time.perf_counter() - embed_done)
    labels = [str(label) for label in model.classifier.classes_]
    flags = review_flags(probabilities, vectors, labels, model, review)
    rows = []
    meta, embedder_id = model.meta, embedder.id
    for i, post in enumerate(posts):
        row = ResultRow(post_id=post.id, model_name=meta.name, model_version=meta.version,
                        status=Status.DONE, embedder_id=embedder_id, attempts=post.attempt + 1,
                        metadata=post.metadata or None, batch_id=batch_id)
        if i in rejected:
            row.status, row.error = Status.REJECTED, f"embedder refused the text: {rejected[i]}"
        else:
            row.answer(probabilities[i], labels)
            if flags is not None and review is not None:
                flag_row(row, flags[i], post.text, review)
        rows.append(row)
    if embedded is not None:
        embedded(EmbeddedBatch(texts=texts, vectors=vectors, refused=rejected, model=model,
                               embedder_id=embedder_id, rows=rows,
                               posts_text=sent,
                               fresh=cached.fresh if cached else {},
                               cache_url=cache_url if defer_cache_store else None))
    return rows


def _with_attempt(post: Post) -> Post:
    return post.delivered(post.attempt + 1)


def _serving(models: ServedModel,
             settings: Settings) -> tuple[ModelAndEmbedder | None, str, int, TopicqError | None]:
    """The (model, embedder) pair for this batch, the model's name and version, or why there is none.

    Without a usable model the posts go round again (RetryPolicy) and become `failed`
    under version 0 after MAX_RETRIES: nothing is lost and nothing loops forever."""
    try:
        served = models.snapshot()
        return served, served.model.meta.name, served.model.meta.version, None
    except TopicqError as exc:
        return None, settings.model_name, 0, exc


def reject_ids(post_ids: list[str], reason: str, *, settings: Settings, models: ServedModel) -> None:
    """Record posts `rejected` by id alone (their message could not be read); TransientError if the
    database is down."""
    _, name, version, _ = _serving(models, settings)
    now = utcnow()
    write_rows(settings.db_url, [ResultRow(post_id=pid, model_name=name, model_version=version,
                                           status=Status.REJECTED, error=reason, received_at=now)
                                 for pid in post_ids])


@dataclass
class _Validated:
    valid: list[Post] = field(default_factory=list)
    rejected: list[ResultRow] = field(default_factory=list)  # name and version filled in later
    rejected_raw: list[dict[str, Any]] = field(default_factory=list)  # as they came, to send again


def _validate(payloads: list[Any], attempts: list[int] | None, settings: Settings) -> _Validated:
    """Each payload once: a Post, a `rejected` row (usable id), or a log line (no usable id)."""
    out = _Validated()
    for i, raw in enumerate(payloads):
        attempt = min(attempts[i], settings.max_retries) if attempts else 0
        try:
            out.valid.append(parse_post(raw, max_text_chars=settings.max_text_chars,
                                        max_metadata_bytes=settings.max_metadata_bytes, attempt=attempt))
        except InvalidPostError as exc:
            if exc.post_id is None:
                log.warning("rejected a post without a usable id: %s", exc)
                continue
            out.rejected.append(ResultRow(post_id=exc.post_id, model_name="", model_version=0,
                                          status=Status.REJECTED, error=str(exc),
                                          metadata=storable_metadata(raw.get("metadata"),
                                                                     settings.max_metadata_bytes)))
            out.rejected_raw.append(raw)
    return out


def process(payloads: list[Any], *, settings: Settings, models: ServedModel, cache_embeddings: bool = True,
            attempts: list[int] | None = None, followers: AfterBatch | None = None) -> BatchReport:
    """Validate, classify and record a batch; returns what was written and what to retry.

    The batch is embedded and classified with one snapshot of `models` (a version and its
    embedder): a worker on EMBEDDER=auto may swap both between batches.
    `attempts[i]` is how often payload i was delivered before (from its message header);
    `followers` (shadow scoring, drift sums) run once the rows are written."""
    received = utcnow()  # when this worker took the batch up; processed_at is set at write
    report = BatchReport()
    policy = RetryPolicy(settings)
    batch = _validate(payloads, attempts, settings)
    embedded: list[EmbeddedBatch] = []
    served, name, version, model_error = _serving(models, settings)
    report.model_name, report.model_version = name, version
    rows = batch.rejected
    for row in rows:
        row.model_name, row.model_version = name, version
    try:
        if served is None:
            raise model_error or TransientError("no model to serve")
        started = time.perf_counter()
        rows += classify_batch(batch.valid, served.embedder, served.model,
                               cache_url=settings.db_url if cache_embeddings else None,
                               review=ReviewPolicy.from_settings(settings), embedded=embedded.append,
                               defer_cache_store=True)
        report.classify_ms = (time.perf_counter() - started) * 1000
    except TopicqError as exc:
        if not policy.retries(exc):
            raise
        rows += _retry_or_fail(report, batch.valid, exc, policy, name, version)
    for row in rows:
        row.received_at = row.received_at or received
    try:
        repeats = write_rows(settings.db_url, rows)
    except TransientError as exc:
        _retry_unwritten(report, batch, exc, policy, rows=len(rows))
        return report
    # A repeat of an id already done is not kept (a done row is final): counted apart, not as done.
    not_kept = {id(row) for row in repeats}
    report.written = [row for row in rows if id(row) not in not_kept]
    metrics.repeated_ids(len(repeats))
    _log_batch(report, len(payloads), name, version)
    # The new vectors go into the embedding cache after the rows (the followers' first step in a worker).
    if followers is not None:
        followers.after_write(embedded)
    else:
        for done in embedded:
            done.store_fresh()
    return report


def _retry_unwritten(report: BatchReport, batch: _Validated, exc: TransientError, policy: RetryPolicy, *,
                     rows: int) -> None:
    """Nothing was written: every post with an id goes round again, the rejected ones too. The
    database is at fault, not the posts: no attempt is spent on them here."""
    outage = policy.outage()
    retry_ids = {p.id for p in report.retry}
    report.retry += [p for p in batch.valid if p.id not in retry_ids]
    report.resend = batch.rejected_raw
    report.retry_delay_s = max(report.retry_delay_s, outage.delay_s)
    report.error, report.retry_reason = str(exc), metrics.retry_reason(exc)
    log.warning("database write failed for %d posts, will retry: %s", rows, exc)


def _log_batch(report: BatchReport, size: int, name: str, version: int) -> None:
    """One line per batch, and one warning per rejected post with its reason."""
    statuses = Counter(row.status for row in report.written)
    for row in report.written:
        if row.status == Status.REJECTED:
            log.warning("rejected post %s: %s", ascii(row.post_id), row.error)
    log.info("batch of %d posts: %d done, %d rejected, %d failed, %d to retry; embed+classify %.0f ms; "
             "model %s:%s", size, statuses[Status.DONE], statuses[Status.REJECTED], statuses[Status.FAILED],
             len(report.retry), report.classify_ms, name, version)


def _retry_or_fail(report: BatchReport, posts: list[Post], exc: TopicqError, policy: RetryPolicy,
                   name: str, version: int) -> list[ResultRow]:
    """The posts go round again as the policy says; those out of attempts become `failed` rows."""
    decision = policy.decide(exc, max((p.attempt for p in posts), default=0))
    failed = []
    for post in posts:
        if not decision.spend_attempt:
            report.retry.append(post)
        elif policy.gives_up(post.attempt):
            failed.append(ResultRow(
                post_id=post.id, model_name=name, model_version=version, status=Status.FAILED,
                error=f"gave up after {post.attempt + 1} attempts: {exc}",
                attempts=post.attempt + 1, metadata=post.metadata or None, text=post.text))
        else:
            report.retry.append(_with_attempt(post))
    report.retry_delay_s = max(report.retry_delay_s, decision.delay_s)
    report.error, report.retry_reason = str(exc), metrics.retry_reason(exc)
    # The worker's own setup (key refused, no model) needs a person: say so loudly.
    what, level = type(exc).__name__, logging.WARNING
    if isinstance(exc, ConfigError):
        what, level = "the embedder refuses this worker's configuration", logging.ERROR
    elif isinstance(exc, ModelError):
        what, level = "no model this worker can serve", logging.ERROR
    log.log(level, "%s: %s (%d posts: %d to retry in %.0fs%s, %d failed)", what, exc, len(posts),
            len(report.retry), decision.delay_s, "" if decision.spend_attempt else ", no attempt spent",
            len(failed))
    return failed
