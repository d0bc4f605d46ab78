"""Gemini embeddings through google-genai (docs/architecture.md §8).

A batch is cut into calls of at most 100 texts, several in flight on a
bounded thread pool, each with a timeout and a few SDK retries for 5xx and
dropped connections. A 429 is honoured: nothing is sent before its
`retryDelay` has passed (here and, through the shared limiter, in every
worker); short delays are waited out, long ones go back to the caller as
RateLimitedError. A 400 on a batch is narrowed down by bisection to the
texts that cause it, so one bad post does not sink its neighbours.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from shared.errors import (
    ConfigError,
    InvalidPostError,
    PermanentError,
    RateLimitedError,
    TopicqError,
    TransientError,
)
from shared.model.embedders.base import Embedder, EmbedOutcome, l2_normalise
from shared.model.embedders.embedder_id import gemini_id
from shared.model.embedders.gemini_errors import DailyQuotaError, mask, translate
from shared.model.embedders.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter, estimate_tokens
from shared.settings import Settings

T = TypeVar("T")

log = logging.getLogger(__name__)

MAX_BATCH = 100  # the API refuses larger batchEmbedContents calls
MAX_DIM = 3072
TASK = "CLASSIFICATION"
# gemini-embedding-2 takes no task_type: the task is written into the text instead.
PROMPT_PREFIX = "task: classification | query: "
_RETRIED_STATUSES = [408, 500, 502, 503, 504]  # not 429: we honour its retryDelay ourselves
PROBE_TEXT = "topicq start-up check"  # one short text: a wrong key costs nothing, a right one ~5 tokens


def takes_task_type(model: str) -> bool:
    """gemini-embedding-001 (and the exp models) take task_type; newer Gemini models take a prompt."""
    name = model.rsplit("/", 1)[-1]
    return "gemini" not in name or name.startswith(("gemini-embedding-001", "gemini-embedding-exp"))


class GeminiEmbedder(Embedder):
    def __init__(self, api_key: str, *, model: str = "gemini-embedding-001", dim: int = 768,
                 base_url: str | None = None, api_version: str = "v1beta", timeout_s: float = 30.0,
                 max_in_flight: int = 4, retries: int = 2, retry_initial_s: float = 1.0,
                 wait_429_s: float = 10.0, max_429_waits: int = 3, daily_backoff_s: float = 3600.0,
                 limiter: RateLimiter | None = None, batch_size: int = MAX_BATCH) -> None:
        if not api_key:
            raise ConfigError("the Gemini embedder needs an API key: set GEMINI_API_KEY")
        if not 1 <= dim <= MAX_DIM:
            raise ConfigError(f"GEMINI_DIM must be between 1 and {MAX_DIM}, not {dim}")
        if not 1 <= batch_size <= MAX_BATCH or max_in_flight < 1:
            raise ConfigError(f"batch size must be 1..{MAX_BATCH} and max in flight at least 1")
        self.model = model
        self.dim = dim
        self.id = gemini_id(model, dim, TASK)
        self.base_url = base_url or None  # None lets the SDK read GOOGLE_GEMINI_BASE_URL
        self.api_version = api_version
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.retries = retries
        self.retry_initial_s = retry_initial_s
        self.wait_429_s = wait_429_s
        self.max_429_waits = max_429_waits
        self.daily_backoff_s = daily_backoff_s
        self.batch_size = batch_size
        self._api_key = api_key
        self._limiter = limiter
        self._lock = threading.Lock()
        self._blocked_until = 0.0  # monotonic time before which no call may start (after a 429)
        # Built on first use, so a worker process that forks after construction gets its own.
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, limiter: RateLimiter | None = None) -> GeminiEmbedder:
        key = settings.gemini_key()
        if not key:
            raise ConfigError("EMBEDDER=gemini needs an API key: set GEMINI_API_KEY "
                              "(or GEMINI_API_KEY_FILE to a file holding it)")
        return cls(
            key, model=settings.gemini_model, dim=settings.gemini_dim,
            base_url=settings.gemini_base_url, api_version=settings.gemini_api_version,
            timeout_s=settings.gemini_timeout_s, max_in_flight=settings.gemini_max_in_flight,
            retries=settings.gemini_retries, wait_429_s=settings.gemini_wait_429_s,
            daily_backoff_s=settings.gemini_daily_quota_backoff_s,
            limiter=limiter if limiter is not None else limiter_from_settings(settings),
        )

    def __repr__(self) -> str:  # never the key
        return f"GeminiEmbedder(id={self.id!r}, base_url={self.base_url!r})"

    def embed(self, texts: list[str]) -> np.ndarray:
        outcome = self.embed_each(texts)
        if outcome.rejected:
            index, reason = next(iter(sorted(outcome.rejected.items())))
            raise InvalidPostError(f"{len(outcome.rejected)} of {len(texts)} texts refused; "
                                   f"text {index}: {reason}")
        return outcome.vectors

    def embed_each(self, texts: list[str]) -> EmbedOutcome:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        rejected: dict[int, str] = {}
        todo = list(range(len(texts)))
        if not takes_task_type(self.model):
            # The prompt prefix would hide an empty text from the service's own check.
            rejected = {i: "Gemini refused the text: text must not be empty" for i in todo
                        if not texts[i].strip()}
            todo = [i for i in todo if i not in rejected]
        spans = [todo[i:i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        pool = self._executor()
        futures = [pool.submit(self._embed_span, texts, span) for span in spans]
        failures: list[TopicqError] = []
        for future in futures:
            try:
                rows, refused = future.result()
            except TopicqError as exc:
                failures.append(exc)
                _cancel(futures)  # the batch fails anyway: do not spend quota on the rest
                continue
            for index, row in rows.items():
                vectors[index] = row
            rejected.update(refused)
        if failures:
            raise _most_telling(failures)
        if rejected:
            log.warning("Gemini refused %d of %d texts", len(rejected), len(texts))
        return EmbedOutcome(vectors, rejected)

    def check_access(self) -> None:
        """Embed one short probe, so a wrong key or model stops a worker at start, not post by post.

        ConfigError (key refused, model unknown) is raised. A transient failure (429, 5xx,
        timeout) only logs a warning: a busy service at start is no reason not to start.
        """
        try:
            self.embed([PROBE_TEXT])
        except TransientError as exc:
            log.warning("could not check the Gemini key at start (%s); starting anyway", exc)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            client, self._client = self._client, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if client is not None:
            client.close()

    def _embed_span(self, texts: list[str], span: list[int]) -> tuple[dict[int, np.ndarray], dict[int, str]]:
        """Embed texts[span]; on a 400, bisect until the refused texts are alone."""
        try:
            matrix = self._call([texts[i] for i in span])
        except InvalidPostError as exc:
            if len(span) == 1:
                return {}, {span[0]: str(exc)}
            half = len(span) // 2
            rows, refused = self._embed_span(texts, span[:half])
            more_rows, more_refused = self._embed_span(texts, span[half:])
            return rows | more_rows, refused | more_refused
        return dict(zip(span, matrix, strict=True)), {}

    def _call(self, batch: list[str]) -> np.ndarray:
        """One batchEmbedContents call, waiting out short 429s; our errors only."""

        def take_quota() -> None:
            if self._limiter is not None:
                self._limiter.acquire(len(batch), sum(estimate_tokens(text) for text in batch))
                self._wait_for_cooldown()  # a 429 may have come in while this call queued

        def embed() -> np.ndarray:
            contents, config = self._request(batch)
            response = self._get_client().models.embed_content(
                model=self.model, contents=contents, config=config)
            return self._rows(response, len(batch))

        return self._attempt(embed, before=take_quota)

    def _attempt(self, call: Callable[[], T], before: Callable[[], None] | None = None) -> T:
        """`call()` after any cool-down (and `before`), short 429s waited out; our errors only."""
        waits = 0
        while True:
            self._wait_for_cooldown()
            if before is not None:
                before()
            try:
                return call()
            except Exception as exc:  # noqa: BLE001 - this is the boundary: translate everything
                error = translate(exc, secret=self._api_key, model=self.model,
                                  timeout_s=self.timeout_s, daily_backoff_s=self.daily_backoff_s)
            if (isinstance(error, RateLimitedError) and not isinstance(error, DailyQuotaError)
                    and error.retry_after):
                self._cool_down(error.retry_after)
                if error.retry_after <= self.wait_429_s and waits < self.max_429_waits:
                    waits += 1
                    log.info("Gemini 429: waiting %.1fs as asked", error.retry_after)
                    continue
            raise error from None

    def _request(self, batch: list[str]) -> tuple[list[Any], Any]:
        """The SDK's contents and config for these texts (also what a Batch API job sends)."""
        from google.genai import types

        if takes_task_type(self.model):
            config = types.EmbedContentConfig(task_type=TASK, output_dimensionality=self.dim)
            return list(batch), config
        # One Content per text: the SDK would merge plain strings into one vector.
        contents = [types.Content(role="user", parts=[types.Part(text=PROMPT_PREFIX + text)])
                    for text in batch]
        return contents, types.EmbedContentConfig(output_dimensionality=self.dim)

    def _rows(self, response: Any, n: int) -> np.ndarray:
        embeddings = response.embeddings or []
        if len(embeddings) != n or any(len(e.values or []) != self.dim for e in embeddings):
            raise TransientError(f"malformed reply from Gemini: expected {n} vectors of {self.dim} "
                                 f"values, got {len(embeddings)}")
        matrix = np.asarray([e.values for e in embeddings], dtype=np.float32)
        if not np.isfinite(matrix).all():
            raise TransientError("malformed reply from Gemini: non-finite values")
        return l2_normalise(matrix)  # below 3,072 dimensions Gemini does not normalise

    def _cool_down(self, seconds: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, time.monotonic() + seconds)
        if self._limiter is not None:
            try:
                self._limiter.pause(seconds)  # tell the other workers too
            except TransientError as exc:
                log.debug("could not share the 429 pause: %s", exc)

    def _wait_for_cooldown(self) -> None:
        while (left := self._blocked_until - time.monotonic()) > 0:
            time.sleep(left)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="gemini")
            return self._pool

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> Any:
        from google import genai
        from google.genai import types

        retry = types.HttpRetryOptions(attempts=self.retries + 1, initial_delay=self.retry_initial_s,
                                       jitter=self.retry_initial_s, max_delay=10.0,
                                       http_status_codes=_RETRIED_STATUSES)
        options = types.HttpOptions(base_url=self.base_url, api_version=self.api_version,
                                    timeout=int(self.timeout_s * 1000), retry_options=retry)
        try:
            # vertexai=False: GOOGLE_GENAI_USE_VERTEXAI in the environment must not reroute us.
            return genai.Client(api_key=self._api_key, vertexai=False, http_options=options)
        except ValueError as exc:
            raise ConfigError(f"cannot build the Gemini client: {mask(str(exc), self._api_key)}") from None


def limiter_from_settings(settings: Settings) -> RateLimiter | None:
    """The rpm/tpm limiter GEMINI_RATE_LIMITER names: shared through Redis by default."""
    wait = settings.gemini_rate_wait_s
    if settings.gemini_rate_limiter == "redis":
        return RedisRateLimiter(settings.redis_url, rpm=settings.gemini_rpm, tpm=settings.gemini_tpm,
                                name=f"gemini:{settings.gemini_model}", max_wait_s=wait)
    if settings.gemini_rate_limiter == "memory":
        return MemoryRateLimiter(rpm=settings.gemini_rpm, tpm=settings.gemini_tpm, max_wait_s=wait)
    return None


def _cancel(futures: list[Future[Any]]) -> None:
    for future in futures:
        future.cancel()


def _most_telling(failures: list[TopicqError]) -> TopicqError:
    """Permanent beats rate-limited beats transient: retrying must be able to help."""
    for kind in (PermanentError, RateLimitedError):
        matching = [f for f in failures if isinstance(f, kind)]
        if matching:
            if kind is RateLimitedError:
                return max(matching, key=lambda f: getattr(f, "retry_after", 0) or 0)
            return matching[0]
    return failures[0]
