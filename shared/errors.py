"""topicq's exceptions, split by what the caller should do next.

    TopicqError
    ├── TransientError        retry later with backoff (API 429/5xx, timeouts, DB/Redis down)
    │   ├── RateLimitedError  the service asked us to wait `retry_after` seconds
    │   └── DatabaseUnavailableError  our database is down or refuses every write (read-only, a
    │                                 table missing, ...): wait, without spending a post's retries
    └── PermanentError        the same call cannot succeed as it is
        ├── InvalidPostError  the post itself is bad (missing id, empty text, ...): recorded, never retried
        ├── DatasetError      a training file or dataset cannot be used
        ├── ModelError        a model version is missing, altered or incompatible
        └── ConfigError       settings are wrong (bad API key, unknown embedder)

A command stops on a PermanentError with one line. In a worker, a ModelError or
ConfigError is the worker's setup, not the post's fault: its posts wait (at
least RETRY_MAX_S) for a person to fix it, and are recorded `failed` after
MAX_RETRIES (worker/retry_policy.py has the whole table). Third-party exceptions
are translated into these at the boundary (embedders, database), so callers
only ever see this tree.
"""

from __future__ import annotations


class TopicqError(Exception):
    """Base of all topicq errors."""


class TransientError(TopicqError):
    """Worth retrying: the same call may succeed later."""


class RateLimitedError(TransientError):
    """The service refused for now; wait at least `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DatabaseUnavailableError(TransientError):
    """Our own database cannot be reached, or refuses every write for a reason of its own (read-only,
    a table missing, permissions, disk full, locks); the posts are not at fault, so no retry is
    spent on them."""


class PermanentError(TopicqError):
    """Retrying cannot help: record the reason and move on."""


class InvalidPostError(PermanentError):
    """A post fails validation; carries the post id when it has one."""

    def __init__(self, message: str, post_id: str | None = None) -> None:
        super().__init__(message)
        self.post_id = post_id


class DatasetError(PermanentError):
    """A dataset or training file cannot be used as given."""


class ModelError(PermanentError):
    """A model version is missing, altered, or does not fit the embedder."""


class ConfigError(PermanentError):
    """Settings are wrong or incomplete."""
