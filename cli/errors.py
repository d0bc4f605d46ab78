"""One line for the errors a user can fix: our own (a database that cannot be used among them), and Redis.

The `topicq` group prints the line (exit status 2); `topicq -v` adds the traceback.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from shared.errors import TopicqError


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else exc.__class__.__name__


def _broker_problem(exc: BaseException) -> str | None:
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError

    from shared.database.connection import safe_url
    from shared.settings import get_settings

    if isinstance(exc, KombuOperationalError | RedisConnectionError):
        return (f"cannot reach Redis at {safe_url(get_settings().redis_url)} ({_first_line(exc)}); "
                "start it or set REDIS_URL")
    if isinstance(exc, ResponseError) and "DB index is out of range" in str(exc):
        return (f"Redis at {safe_url(get_settings().redis_url)} has no such database (DB index is out of "
                "range; it has 16 unless configured otherwise): set REDIS_URL to one of its databases")
    return None


def describe(exc: BaseException) -> str | None:
    """The one line to print for `exc`, or None when it is a bug that needs its traceback."""
    if isinstance(exc, TopicqError):
        return str(exc)
    return _broker_problem(exc)
