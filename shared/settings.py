"""One settings object, read from the environment once.

Every tunable has a named default with the reason for it. `get_settings()`
caches; tests call `get_settings.cache_clear()` after changing the environment.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigError

EmbedderChoice = Literal["auto", "local-onnx", "local-onnx-fp32", "local", "gemini", "fake"]
ResolvedEmbedder = Literal["local-onnx", "local-onnx-fp32", "local", "gemini", "fake"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # Where the embedded defaults live: SQLite database and model store.
    topicq_home: Path = Field(default=Path(".topicq"))
    database_url: str | None = None  # default: sqlite file under topicq_home
    model_dir: Path | None = None  # default: topicq_home/models
    redis_url: str = "redis://localhost:6379/0"

    # Which model the workers serve: the `production` alias of this name.
    model_name: str = "topics"
    model_alias: str = "production"
    # How often a worker re-reads the alias, so a promotion takes effect without restart.
    model_refresh_s: float = 5.0
    # The challenger: when this alias of MODEL_NAME names another version trained with the same
    # embedder, workers also classify every batch with it, from the same embeddings, and write its
    # rows under its own version (marked shadow). Empty: no challenger is followed.
    shadow_alias: str = "staging"
    # Drift sums are kept per bucket of this many seconds; `topicq drift --window` adds buckets up,
    # so a window is a multiple of it (5 minutes: 10m, 1h and 1d windows all fit).
    drift_bucket_s: int = 300
    # The window of the drift gauges each worker exports (worker/drift_metrics.py), rounded to buckets.
    drift_metrics_window_s: int = Field(default=3600, ge=1)

    embedder: EmbedderChoice = "auto"
    local_model_max_tokens: int = 256  # all-MiniLM-L6-v2 was trained on 256-token inputs
    local_batch_size: int = 64  # at most this many posts per forward pass of the torch encoders
    # The torch encoder (local) batches by tokens: length-sorted posts, (posts x longest)
    # <= this. Sorted batches pay almost no padding; 4,096 bounds the attention buffers (memory).
    # The onnx encoders run each post alone (shared/model/embedders/onnx.py says why).
    embed_batch_tokens: int = 4096
    # Threads of the onnx encoder, each running one post at a time; 0 = every core this process may
    # use. The classifier runs after the encoder on the batch's thread (shared/model/threads.py).
    encoder_threads: int = 0
    # Where the onnx encoder files are built and kept; default $XDG_CACHE_HOME (~/.cache)/topicq/encoders.
    encoder_dir: Path | None = None
    fake_embed_delay_s: float = 0.0  # the fake embedder's time per call, to simulate a slow API

    gemini_api_key: SecretStr | None = None
    gemini_api_key_file: Path | None = None
    gemini_base_url: str | None = None  # e.g. the fake server; unset = Google's endpoint
    gemini_api_version: str = "v1beta"
    gemini_model: str = "gemini-embedding-001"
    gemini_dim: int = 768  # the tutorial's size: 4x cheaper to store than 3,072, same accuracy
    gemini_timeout_s: float = 30.0
    gemini_max_in_flight: int = 8  # concurrent calls per worker (one per thread at `topicq worker -c 8`)
    gemini_rpm: int = 3000  # quota: texts (requests) per minute across all workers
    gemini_tpm: int = 1_000_000  # quota: tokens per minute across all workers
    # SDK retries (with backoff) of 5xx, timeouts and dropped connections before we give up.
    gemini_retries: int = 2
    # A 429 asking to wait at most this long is waited out in the worker; longer goes back to the queue.
    gemini_wait_429_s: float = 10.0
    gemini_daily_quota_backoff_s: float = 3600.0  # per-day quota spent: come back in an hour
    # Where the rpm/tpm limit is kept: redis = shared by all workers (REDIS_URL); memory = this process.
    gemini_rate_limiter: Literal["redis", "memory", "off"] = "redis"
    gemini_rate_wait_s: float = 120.0  # longest a call queues for the rate limit before a retry later

    batch_size: int = 32  # posts per embed call when the queue is busy
    batch_wait_s: float = 1.0  # longest a post waits in a worker's buffer
    backfill_chunk: int = 64  # posts per backfill message
    # A larger chunk from any producer is split by the worker into chunks of this many posts before
    # it is processed: a chunk must be done well within VISIBILITY_TIMEOUT_S, or it runs twice.
    max_chunk_posts: int = Field(default=256, ge=1)
    # A message due later (eta, countdown) waits in Redis, not in a worker; one due further ahead
    # than this is refused (dead letter and a `rejected` row). Longer than any retry's wait.
    max_delay_s: float = Field(default=86_400.0, gt=0)
    max_text_chars: int = 200_000  # larger payloads are refused; preprocessing keeps the first 5,000
    max_metadata_bytes: int = Field(default=64 * 1024, ge=1)  # a post's metadata as compact UTF-8 JSON
    max_retries: int = 5  # transient failures before a post is recorded `failed`
    retry_base_s: float = 2.0  # first backoff; doubles each attempt, with jitter
    retry_max_s: float = 300.0
    # Must exceed buffering plus processing: an unacked message is redelivered after it.
    visibility_timeout_s: int = 600
    # How long a send (producer, or a worker sending a retry) waits out an unreachable Redis,
    # e.g. a broker restart, before it raises.
    broker_retry_s: float = 30.0

    queue: str = "topicq"
    dead_letter_max: int = 10_000  # newest malformed messages kept in `<queue>.dead`
    # ... and at most about this many bytes of them, so large junk alone cannot fill Redis.
    dead_letter_max_bytes: int = Field(default=64 * 2**20, ge=2**16)
    cache_embeddings: bool = True  # workers reuse embeddings of texts seen before

    # The review flag (shared/improvement/review.py). A version trained with held-out review scores flags
    # about REVIEW_RATE of in-domain posts, thresholds set on its held-out posts for that rate
    # (shared/model/review_calibration.py; bench/review.py measures what each rate catches).
    review_rate: float = 0.1
    # Older versions: a post is flagged when its top probability is below
    # REVIEW_BELOW or its lead over the runner-up below REVIEW_MARGIN, or when it is out of domain.
    # Chosen on the sci benchmark (bench/review.py, bench/results/review.md; 4 classes): together they
    # flag 13.5% of the in-domain test posts and hold 87% of the model's mistakes (accuracy 0.994 on
    # the rest). Below 0.6 alone holds 67%; a margin under 2 x REVIEW_BELOW - 1 adds nothing.
    review_below: float = 0.6
    review_margin: float = 0.4
    # Whose text a `done` row keeps: review = flagged posts only (for `topicq review export`
    # and training on corrections), all, none. Failed rows always keep theirs (retry-failed).
    keep_text: Literal["review", "all", "none"] = "review"
    # Prometheus metrics and /healthz of a worker process (worker/exporter.py); 0 = no metrics at all.
    # One port per process: several workers on one host each need their own.
    metrics_port: int = Field(default=9800, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"  # scraped from other hosts (Prometheus, Kubernetes probes)
    # A `done` post whose best score is below this counts in topicq_low_confidence_total.
    low_confidence_score: float = Field(default=0.5, ge=0.0, le=1.0)
    # Liveness: the consumer loop rewrites this file every HEARTBEAT_INTERVAL_S; `topicq health`
    # and /healthz call a worker stuck when it is older than HEARTBEAT_MAX_AGE_S (long enough to
    # ride out a broker reconnect without a restart).
    heartbeat_file: Path | None = None  # default: topicq_home/worker-heartbeat.json
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    heartbeat_max_age_s: float = Field(default=60.0, gt=0)
    # Celery task events (Flower's task list): off; on, every message adds Redis publishes
    # (task received, started, succeeded) that nobody reads unless Flower runs. Metrics cover
    # throughput, failures and latency without them.
    task_events: bool = False

    @field_validator("batch_size", "embed_batch_tokens", "backfill_chunk", "max_text_chars", "max_retries",
                     "dead_letter_max", "drift_bucket_s")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("review_below", "review_margin")
    @classmethod
    def _probability(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError("must be between 0 and 1")
        return value

    @field_validator("review_rate")
    @classmethod
    def _rate(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError("must be at least 0 (flag nothing) and below 1")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return check_redis_url(value)

    @field_validator("model_name")
    @classmethod
    def _plain_model_name(cls, value: str) -> str:
        problem = model_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_driver(cls, value: str | None) -> str | None:
        return with_postgres_driver(value) if value else value

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.topicq_home / 'topicq.db').resolve()}"

    @property
    def heartbeat_path(self) -> Path:
        return (self.heartbeat_file or self.topicq_home / "worker-heartbeat.json").resolve()

    @property
    def models_path(self) -> Path:
        return (self.model_dir or self.topicq_home / "models").resolve()

    def gemini_key(self) -> str | None:
        """The API key from GEMINI_API_KEY or the file GEMINI_API_KEY_FILE names."""
        if self.gemini_api_key is not None:
            return self.gemini_api_key.get_secret_value()
        if self.gemini_api_key_file is not None:
            try:
                return self.gemini_api_key_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read GEMINI_API_KEY_FILE {self.gemini_api_key_file}: {exc.strerror}"
                ) from None
        return None

    def resolved_embedder(self) -> ResolvedEmbedder:
        """`auto` means gemini when an API key is configured, else the local int8 onnx encoder."""
        if self.embedder != "auto":
            return self.embedder
        has_key = self.gemini_api_key is not None or self.gemini_api_key_file is not None
        return "gemini" if has_key else "local-onnx"


# A model's versions live in MODEL_DIR/<name>/: a name is one plain path segment, never '.', '..' or a path.
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def model_name_problem(name: str) -> str | None:
    """Why `name` cannot name a model, or None when it can."""
    if MODEL_NAME_PATTERN.fullmatch(name):
        return None
    return ("must be a plain name: a letter or digit, then at most 99 letters, digits, '.', '_' or '-'")


REDIS_SCHEMES = ("redis", "rediss", "unix")
IN_PROCESS_BROKER = "memory"  # kombu's in-memory transport: Celery inside one process (tests)


def _without_password(url: str) -> str:
    scheme, at, rest = url.partition("://")
    if not at or "@" not in rest:
        return url
    user, _, host = rest.rpartition("@")  # a password may hold '/' or '@'; hosts and paths do not
    return f"{scheme}://{user.partition(':')[0]}:***@{host}" if ":" in user else url


def _redis_url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme == IN_PROCESS_BROKER:
        return None
    if parts.scheme not in REDIS_SCHEMES:
        return f"scheme {parts.scheme or '(none)'!r} is not one of {', '.join(REDIS_SCHEMES)}"
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        if not parts.path:
            return "no socket path"
        db = query.get("db", ["0"])[0]
    else:
        try:
            port = parts.port  # ValueError: not a number, or out of 0-65535
        except ValueError:
            return "the port is not a number from 1 to 65535 (an IPv6 host goes in brackets: [::1])"
        if port == 0:
            return "the port is not a number from 1 to 65535"
        if not parts.hostname:
            return "no host"
        db = parts.path.lstrip("/") or query.get("db", ["0"])[0]
    if not db.isdigit():
        return f"the database {db!r} is not a whole number (redis://host:6379/0)"
    return None


def check_redis_url(url: str) -> str:
    """`url`, when Redis clients can use it: redis://, rediss:// or unix://, a port from 1 to 65535,
    a whole-number database. Else a ConfigError naming REDIS_URL, its password masked."""
    try:
        problem = _redis_url_problem(url)
    except ValueError as exc:  # urlsplit: e.g. an unbalanced [ in the host
        problem = str(exc)
    if problem:
        raise ConfigError(f"REDIS_URL {_without_password(url)} cannot be used: {problem}; "
                          "use redis://[:password@]host[:port][/db], rediss://... or unix:///path/to/socket")
    return url


# Heroku-style and plain PostgreSQL URLs name no driver, or one that is not installed.
_POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def with_postgres_driver(url: str) -> str:
    """postgres:// and postgresql:// URLs use the installed psycopg (3) driver."""
    for scheme in _POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


def describe_invalid_settings(exc: ValidationError) -> str:
    """One line naming each bad variable; values are left out, as they may be secrets."""
    problems = [f"{'_'.join(map(str, error['loc'])).upper()}: {error['msg']}" for error in exc.errors()]
    return f"invalid setting {'; '.join(problems)} (fix the environment variable)"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_invalid_settings(exc)) from None
