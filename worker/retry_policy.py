"""When a post goes round again, and after how long: one table for every error a batch can meet.

    error (shared/errors.py)    attempt spent  wait
    DatabaseUnavailableError    no             RETRY_BASE_S .. 8x (our database, not the post)
    RateLimitedError            yes            backoff, at least the service's retry_after
    TransientError (the rest)   yes            backoff: RETRY_BASE_S doubling, full jitter, RETRY_MAX_S cap
    ConfigError, ModelError     yes            at least RETRY_MAX_S (the worker's setup: a person fixes it)
    InvalidPostError            never retried: the post is recorded `rejected`

A post whose attempts reach MAX_RETRIES is recorded `failed` (`topicq retry-failed`
sends it again). On redis:// the transport parks a message due later until it is
due (shared/wire/transport.py). Elsewhere (rediss://) a worker holds a message with a
countdown unacknowledged until it is due, and Redis would deliver it a second time
after VISIBILITY_TIMEOUT_S: so no countdown exceeds half that timeout, and a
longer wait is taken in steps: the
message carries its due time (DUE_HEADER) and is sent on again, unprocessed and
without spending an attempt, until it is due.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from shared.errors import (
    ConfigError,
    DatabaseUnavailableError,
    ModelError,
    RateLimitedError,
    TopicqError,
    TransientError,
)
from shared.settings import Settings


@dataclass(frozen=True)
class Decision:
    spend_attempt: bool
    delay_s: float


def backoff_delay(attempt: int, *, base: float, cap: float, floor: float | None = None) -> float:
    """Exponential backoff with full jitter, never below the server's own `floor`."""
    delay = random.uniform(0, min(cap, base * 2**attempt))
    return max(delay, floor or 0.0)


class RetryPolicy:
    def __init__(self, settings: Settings) -> None:
        self.base_s = settings.retry_base_s
        self.max_s = settings.retry_max_s
        self.max_retries = settings.max_retries
        # The longest countdown a message may carry (see the module's docstring).
        self.max_countdown_s = settings.visibility_timeout_s / 2

    def retries(self, exc: TopicqError) -> bool:
        return isinstance(exc, TransientError | ConfigError | ModelError)

    def decide(self, exc: TopicqError, attempt: int) -> Decision:
        """What a post delivered `attempt` times before gets for `exc` (a retryable error)."""
        if isinstance(exc, DatabaseUnavailableError):
            return self.outage()
        if isinstance(exc, RateLimitedError):
            floor = exc.retry_after
        elif isinstance(exc, ConfigError | ModelError):
            floor = self.max_s
        else:
            floor = None
        return Decision(spend_attempt=True, delay_s=backoff_delay(attempt, base=self.base_s, cap=self.max_s,
                                                                  floor=floor))

    def outage(self) -> Decision:
        """Our database is down: the posts are not at fault, so no attempt is spent."""
        return Decision(spend_attempt=False, delay_s=backoff_delay(3, base=self.base_s, cap=self.max_s,
                                                                   floor=self.base_s))

    def gives_up(self, attempt: int) -> bool:
        """Whether a post delivered `attempt` times before has no attempt left after this one."""
        return attempt + 1 >= self.max_retries

    def countdown(self, due_at: float, now: float | None = None) -> float:
        """The countdown for a message due at `due_at` (epoch seconds): at most one step."""
        return max(0.0, min(due_at - (time.time() if now is None else now), self.max_countdown_s))
