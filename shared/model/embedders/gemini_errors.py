"""google-genai / httpx exceptions translated into shared.errors, in one place.

SDK errors are classified by `.code` and the JSON body in `.details`, never
by subclass: a ClientError that went through pickle (Celery, multiprocessing)
comes back as a plain APIError. Messages are built from the status and the
server's message only, and the API key is masked in whatever we keep.

    429 RESOURCE_EXHAUSTED ........ RateLimitedError (retry_after = RetryInfo.retryDelay)
      quota id "...PerDay..." ..... DailyQuotaError (long retry_after)
    400 with API_KEY_* reason ..... ConfigError (Google answers a bad key with 400, not 401)
    400 INVALID_ARGUMENT .......... InvalidPostError (one of the texts is refused)
    401 / 403 ..................... ConfigError
    404 ........................... ConfigError (unknown model or API version)
    408, 409, 499, 5xx ............ TransientError
    timeouts, connection errors,
    malformed or odd replies ...... TransientError
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

import pydantic
from google.genai import errors as genai_errors

from shared.errors import (
    ConfigError,
    InvalidPostError,
    RateLimitedError,
    TopicqError,
    TransientError,
)

_RETRY_IN = re.compile(r"retry in ([0-9.]+)\s*s", re.IGNORECASE)
_PER_DAY = re.compile(r"per\s*day", re.IGNORECASE)
_MAX_MESSAGE = 300  # server messages can carry long help text; keep log lines readable


def _http_exception_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(timeouts, all HTTP errors) of httpx and httpx2: the SDK uses whichever is installed."""
    timeouts: list[type] = []
    everything: list[type] = []
    for name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        everything.append(module.HTTPError)
        everything.append(module.StreamError)
    return tuple(timeouts), tuple(everything)


_TIMEOUTS, _HTTP_ERRORS = _http_exception_types()


class DailyQuotaError(RateLimitedError):
    """The project's per-day quota is spent: waiting seconds will not help."""


def mask(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def retry_delay(body: Any) -> float | None:
    """Seconds from a google.rpc.RetryInfo detail ("33s", "1.5s" or {"seconds": 33})."""
    for detail in _details(body):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, dict):
                return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return float(delay[:-1])
                except ValueError:
                    return None
    found = _RETRY_IN.search(_message(body))
    return float(found.group(1)) if found else None


def is_daily_quota(body: Any) -> bool:
    """A QuotaFailure naming a per-day quota (or a message saying so)."""
    for detail in _details(body):
        if str(detail.get("@type", "")).endswith("google.rpc.QuotaFailure"):
            for violation in detail.get("violations") or []:
                if isinstance(violation, dict) and any(
                    _PER_DAY.search(str(violation.get(field, "")))
                    for field in ("quotaId", "quotaMetric", "description")
                ):
                    return True
    return bool(_PER_DAY.search(_message(body)))


def _key_problem(body: Any) -> str | None:
    for detail in _details(body):
        reason = str(detail.get("reason", ""))
        if reason.startswith("API_KEY"):
            return reason
    return "API_KEY_INVALID" if "api key not valid" in _message(body).lower() else None


def _error(body: Any) -> dict[str, Any]:
    if isinstance(body, list) and body:
        body = body[0]
    if not isinstance(body, dict):
        return {}
    inner = body.get("error")
    return inner if isinstance(inner, dict) else body


def _details(body: Any) -> list[dict[str, Any]]:
    details = _error(body).get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _message(body: Any) -> str:
    return str(_error(body).get("message") or "")


def translate(exc: BaseException, *, secret: str | None, model: str, timeout_s: float,
              daily_backoff_s: float = 3600.0) -> TopicqError:
    """The shared.errors exception that says what to do about `exc`."""
    if isinstance(exc, TopicqError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        return _from_api_error(exc, secret=secret, model=model, daily_backoff_s=daily_backoff_s)
    if _TIMEOUTS and isinstance(exc, _TIMEOUTS):
        return TransientError(f"Gemini did not answer within {timeout_s:g}s")
    if _HTTP_ERRORS and isinstance(exc, _HTTP_ERRORS):
        return TransientError(f"connection to Gemini failed ({exc.__class__.__name__})")
    if isinstance(exc, json.JSONDecodeError | pydantic.ValidationError):
        return TransientError(f"malformed reply from Gemini ({exc.__class__.__name__})")
    if isinstance(exc, OSError):
        return TransientError(f"connection to Gemini failed ({exc.__class__.__name__})")
    return TransientError(f"unexpected error from the Gemini client ({exc.__class__.__name__}: "
                          f"{mask(str(exc), secret)[:_MAX_MESSAGE]})")


def _from_api_error(exc: genai_errors.APIError, *, secret: str | None, model: str,
                    daily_backoff_s: float) -> TopicqError:
    code = int(getattr(exc, "code", 0) or 0)
    body = getattr(exc, "details", None)
    status = getattr(exc, "status", None) or _error(body).get("status") or ""
    said = mask(_message(body) or str(getattr(exc, "message", "") or ""), secret)[:_MAX_MESSAGE]
    where = f"Gemini {code} {status}".rstrip()
    if code == 429:
        delay = retry_delay(body)
        if is_daily_quota(body):
            return DailyQuotaError(
                f"{where}: the daily quota for {model} is used up; posts wait until it resets "
                f"(raise the quota or lower the volume). Server said: {said}",
                retry_after=max(daily_backoff_s, delay or 0.0),
            )
        return RateLimitedError(f"{where}: rate limited, retry in {delay or '?'}s. {said}",
                                retry_after=delay)
    key_problem = _key_problem(body) if code in (400, 401, 403) else None
    if key_problem or code in (401, 403):
        return ConfigError(f"{where}: Gemini refused the API key ({key_problem or said}): "
                           "check GEMINI_API_KEY / GEMINI_API_KEY_FILE")
    if code == 400 and status in ("INVALID_ARGUMENT", ""):
        return InvalidPostError(f"Gemini refused the text: {said}")
    if code == 404:
        return ConfigError(f"{where}: model {model!r} not found: check GEMINI_MODEL and "
                           f"GEMINI_API_VERSION. {said}")
    if code in (408, 409, 499) or code >= 500:
        return TransientError(f"{where}: {said}")
    return ConfigError(f"{where}: {said}")
