"""The worker's Prometheus metrics and the small functions the tasks and the pipeline call to record them.

One registry per worker process, served by worker/exporter.py on METRICS_PORT.
Recording is off until `enable()` (METRICS_PORT=0 leaves it off: no metric
costs anything then). Every function here is cheap and never raises into a
batch: a post must not fail because a figure could not be kept.

    topicq_posts_total{status, model_name, model_version}   done / rejected / failed / retried
    topicq_batch_size, topicq_embed_seconds{embedder}, topicq_classify_seconds
    topicq_end_to_end_seconds         producer's send stamp -> row committed, per post
    topicq_end_to_end_unstamped_total posts whose message carried no usable stamp
    topicq_bad_send_stamps_total      stamps that were not a recent time in epoch seconds (ignored, the
                                      post is not refused; shared/wire/protocol.py, MAX_STAMP_AGE_S)
    topicq_queue_depth{queue}, topicq_oldest_message_age_seconds{queue}   read from Redis at scrape
    topicq_retries_total{reason}, topicq_rate_limit_wait_seconds
    topicq_embedding_cache_hits_total / _misses_total
    topicq_model_info{name, version, embedder} = 1, topicq_low_confidence_total
    topicq_database_writable          1 while the worker's latest database write succeeded, else 0
    topicq_repeated_ids_total         posts whose id already had a `done` row: their result is not kept
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.errors import (
    ConfigError,
    DatabaseUnavailableError,
    ModelError,
    RateLimitedError,
    TopicqError,
)
from shared.wire.envelope import valid_stamp

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
_enabled = False
_low_confidence = 0.5
_served: tuple[str, str, str] | None = None
_serving_lock = threading.Lock()

POSTS = Counter("topicq_posts", "Posts by outcome: done, rejected, failed, or retried (sent again).",
                ["status", "model_name", "model_version"], registry=REGISTRY)
POSTS_RECEIVED = Counter("topicq_posts_received", "Posts taken up in batches (before their outcome).",
                         registry=REGISTRY)
MESSAGES_RECEIVED = Counter("topicq_messages_received", "Messages taken up (a backfill chunk is one).",
                            registry=REGISTRY)
IN_PROGRESS = Gauge("topicq_posts_in_progress", "Posts in a batch being processed now.", registry=REGISTRY)
BATCH_SIZE = Histogram("topicq_batch_size", "Posts per batch (one embed call each).",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 100, 128, 256, 512), registry=REGISTRY)
EMBED_SECONDS = Histogram("topicq_embed_seconds", "Seconds per embed call of a batch (cache included).",
                          ["embedder"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60),
                          registry=REGISTRY)
CLASSIFY_SECONDS = Histogram("topicq_classify_seconds", "Seconds per classifier call of a batch.",
                             buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1),
                             registry=REGISTRY)
END_TO_END = Histogram("topicq_end_to_end_seconds",
                       "Seconds from the producer's send stamp to the post's row committed.",
                       # Fine up to minutes (a backfill's wait), then coarse: p95 interpolates inside one.
                       buckets=(.05, .1, .25, .5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600,
                                1800, 3600, 21600),
                       registry=REGISTRY)
UNSTAMPED = Counter("topicq_end_to_end_unstamped",
                    "Posts written whose message had no usable send stamp (e.g. a raw LPUSH).",
                    registry=REGISTRY)
BAD_STAMPS = Counter("topicq_bad_send_stamps",
                     "Send stamps that were not a recent time in epoch seconds (ignored).", registry=REGISTRY)
RETRIES = Counter("topicq_retries", "Posts sent again, by the error that made them go round.", ["reason"],
                  registry=REGISTRY)
RATE_LIMIT_WAIT = Histogram("topicq_rate_limit_wait_seconds",
                            "Seconds an embed call waited for the shared rate limit (Gemini).",
                            buckets=(0, .01, .1, .5, 1, 2, 5, 10, 30, 60, 120), registry=REGISTRY)
CACHE_HITS = Counter("topicq_embedding_cache_hits", "Texts whose embedding came from the cache.",
                     registry=REGISTRY)
CACHE_MISSES = Counter("topicq_embedding_cache_misses", "Texts embedded by the embedder.", registry=REGISTRY)
MODEL_INFO = Gauge("topicq_model_info", "The model version this worker serves (value 1).",
                   ["name", "version", "embedder"], registry=REGISTRY)
LOW_CONFIDENCE = Counter("topicq_low_confidence",
                         "Done posts whose best score is below LOW_CONFIDENCE_SCORE.",
                         ["model_name", "model_version"], registry=REGISTRY)
DEAD_LETTERS = Counter("topicq_dead_letters", "Malformed messages moved to the dead-letter list.",
                       registry=REGISTRY)
DATABASE_WRITABLE = Gauge("topicq_database_writable",
                          "1 while this worker's latest database write succeeded; 0 while writes fail.",
                          registry=REGISTRY)
DATABASE_WRITABLE.set(1)
REPEATED_IDS = Counter("topicq_repeated_ids",
                       "Posts whose id already had a done row for the version: their result is not kept.",
                       registry=REGISTRY)


def enable(*, low_confidence_score: float = 0.5) -> None:
    global _enabled, _low_confidence
    _enabled, _low_confidence = True, low_confidence_score


def enabled() -> bool:
    return _enabled


def retry_reason(exc: BaseException) -> str:
    """A short, bounded label for the error that sends posts round again."""
    if isinstance(exc, RateLimitedError):
        return "rate_limited"
    if isinstance(exc, DatabaseUnavailableError):
        return "database_unavailable"
    if isinstance(exc, ConfigError):
        return "config"
    if isinstance(exc, ModelError):
        return "model"
    if isinstance(exc, TopicqError):
        return "transient"
    return "unexpected"


def observe_embed(embedder_id: str, seconds: float, *, hits: int = 0, misses: int = 0) -> None:
    if _enabled:
        EMBED_SECONDS.labels(embedder_id).observe(seconds)
        CACHE_HITS.inc(hits)
        CACHE_MISSES.inc(misses)


def observe_classify(seconds: float) -> None:
    if _enabled:
        CLASSIFY_SECONDS.observe(seconds)


def taken_up(messages: int, posts: int) -> None:
    """A batch starts: `posts` posts from `messages` messages."""
    if _enabled:
        MESSAGES_RECEIVED.inc(messages)
        POSTS_RECEIVED.inc(posts)
        BATCH_SIZE.observe(posts)
        IN_PROGRESS.inc(posts)


def batch_done(report: Any, posts: int, sent_at: dict[str, float], now: float | None = None) -> None:
    """Outcomes of a batch whose rows are committed: statuses, retries, latency from `sent_at`
    (post id -> the producer's stamp; posts absent from it are counted unstamped)."""
    if not _enabled:
        return
    IN_PROGRESS.dec(posts)
    now = time.time() if now is None else now
    model = (report.model_name, str(report.model_version))
    outcomes: Tally[tuple[str, str, str]] = Tally()
    low, unstamped, bad = 0, 0, 0
    for row in report.written:
        outcomes[(str(row.status), row.model_name, str(row.model_version))] += 1
        if row.score is not None and row.score < _low_confidence:
            low += 1
        stamp = sent_at.get(row.post_id)
        if stamp is not None and not valid_stamp(stamp, now=now):
            bad += 1  # e.g. a task called in-process with a stamp the envelope never judged
            stamp = None
        if stamp is None:
            unstamped += 1
        else:
            END_TO_END.observe(max(0.0, now - stamp))  # a producer's clock ahead within the skew: 0 s
    for (status, name, version), count in outcomes.items():
        POSTS.labels(status, name, version).inc(count)
    retried = len(report.retry) + len(report.resend)
    if retried:
        POSTS.labels("retried", *model).inc(retried)
        RETRIES.labels(report.retry_reason or "unexpected").inc(retried)
    if low:
        LOW_CONFIDENCE.labels(*model).inc(low)
    if unstamped:
        UNSTAMPED.inc(unstamped)
    if bad:
        BAD_STAMPS.inc(bad)


def database_writable(ok: bool) -> None:
    if _enabled:
        DATABASE_WRITABLE.set(1 if ok else 0)


def repeated_ids(count: int) -> None:
    if _enabled and count:
        REPEATED_IDS.inc(count)


def bad_stamp() -> None:
    if _enabled:
        BAD_STAMPS.inc()


def dead_letter() -> None:
    if _enabled:
        DEAD_LETTERS.inc()


def serving(name: str, version: int, embedder_id: str) -> None:
    """The version this worker serves now: the only `topicq_model_info` series set."""
    global _served
    labels = (name, str(version), embedder_id)
    if not _enabled or labels == _served:  # told after every look at the alias: mostly no change
        return
    with _serving_lock:
        if labels == _served:
            return
        if _served is not None:
            MODEL_INFO.remove(*_served)  # one series: the version served now
        MODEL_INFO.labels(*labels).set(1)
        _served = labels


class TimedRateLimiter:
    """A rate limiter that records how long each acquire waited (topicq_rate_limit_wait_seconds)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def acquire(self, requests: int, tokens: int) -> float:
        waited = float(self.inner.acquire(requests, tokens))
        if _enabled:
            RATE_LIMIT_WAIT.observe(waited)
        return waited

    def __getattr__(self, name: str) -> Any:  # pause, close, ...
        return getattr(self.inner, name)


def time_rate_limits(embedder: Any) -> None:
    """Wrap the rate limiter of `embedder` (Gemini, possibly behind a wrapper), if it has one."""
    seen: set[int] = set()
    while embedder is not None and id(embedder) not in seen:
        seen.add(id(embedder))
        limiter = getattr(embedder, "_limiter", None)
        if limiter is not None and not isinstance(limiter, TimedRateLimiter):
            embedder._limiter = TimedRateLimiter(limiter)
            return
        embedder = getattr(embedder, "inner", None)


# What shared/wire/backlog.py's BacklogCollector exports, read from Redis at scrape time.
BACKLOG_GAUGES = ("topicq_redis_up", "topicq_queue_depth", "topicq_queue_messages",
                  "topicq_oldest_message_age_seconds")


def exported_names() -> set[str]:
    """Every sample name a worker can export (counters with `_total`, histograms' series), for checks
    of dashboards and alert rules."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    from worker.drift_metrics import FIGURE_NAMES

    names = {*BACKLOG_GAUGES, *FIGURE_NAMES}
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names
