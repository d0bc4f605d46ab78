"""Requests- and tokens-per-minute limits shared by every worker.

Gemini's quota belongs to the project, not to a process: N workers each
keeping to the quota would send N times too much. `RedisRateLimiter` keeps
one sliding-window log in Redis that all workers consult through a single
Lua script (atomic, clocked by Redis `TIME` so worker clocks may drift).
`MemoryRateLimiter` is the same algorithm for one process (tests, a
trainer run without Redis).

A text counts as one request; its tokens are estimated as len(text) / 4.
`acquire` sleeps until the window has room, but never longer than
`max_wait_s`: past that it raises RateLimitedError so the post goes back
to the queue instead of pinning a worker.
"""

from __future__ import annotations

import collections
import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from shared import redis_keys
from shared.errors import RateLimitedError, TransientError

MAX_TOKENS_PER_TEXT = 2048  # Gemini truncates longer input, so it never bills more
CHARS_PER_TOKEN = 4  # Google's rule of thumb for English text


def estimate_tokens(text: str) -> int:
    return max(1, min(MAX_TOKENS_PER_TEXT, math.ceil(len(text) / CHARS_PER_TOKEN)))


class RateLimiter(Protocol):
    def acquire(self, requests: int, tokens: int) -> float:
        """Block until `requests` texts and `tokens` tokens fit the quota; return seconds waited."""
        ...

    def pause(self, seconds: float) -> None:
        """Hold every caller back for `seconds` (the service said 429: retry after)."""
        ...


class _WindowLimiter:
    """`acquire` on top of `_try`, which grants now (0.0) or says how long to wait."""

    def __init__(self, *, rpm: int, tpm: int, window_s: float, max_wait_s: float,
                 sleep: Callable[[float], None]) -> None:
        if rpm < 1 or tpm < 1:
            raise ValueError("rpm and tpm must be at least 1")
        self.rpm = rpm
        self.tpm = tpm
        self.window_s = window_s
        self.max_wait_s = max_wait_s
        self._sleep = sleep

    def _try(self, requests: int, tokens: int) -> float:
        raise NotImplementedError

    def acquire(self, requests: int, tokens: int) -> float:
        # A call larger than the whole quota would wait forever: let it through alone.
        requests = max(1, min(requests, self.rpm))
        tokens = max(1, min(tokens, self.tpm))
        waited = 0.0
        while True:
            wait = self._try(requests, tokens)
            if wait <= 0:
                return waited
            if waited + wait > self.max_wait_s:
                raise RateLimitedError(
                    f"rate limit ({self.rpm} texts / {self.tpm} tokens per {self.window_s:g}s) "
                    f"has no room within {self.max_wait_s:g}s",
                    retry_after=wait,
                )
            # Jitter so that workers woken together do not all retry at the same instant.
            wait += random.uniform(0, min(0.05, wait / 10))
            self._sleep(wait)
            waited += wait


class MemoryRateLimiter(_WindowLimiter):
    """The sliding-window limit for a single process."""

    def __init__(self, *, rpm: int, tpm: int, window_s: float = 60.0, max_wait_s: float = 120.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(rpm=rpm, tpm=tpm, window_s=window_s, max_wait_s=max_wait_s, sleep=sleep)
        self._clock = clock
        self._log: collections.deque[tuple[float, int, int]] = collections.deque()
        self._used = [0, 0]
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def _try(self, requests: int, tokens: int) -> float:
        with self._lock:
            now = self._clock()
            if self._paused_until > now:
                return self._paused_until - now
            while self._log and self._log[0][0] <= now - self.window_s:
                _, r, t = self._log.popleft()
                self._used[0] -= r
                self._used[1] -= t
            used_r, used_t = self._used
            if used_r + requests <= self.rpm and used_t + tokens <= self.tpm:
                self._log.append((now, requests, tokens))
                self._used = [used_r + requests, used_t + tokens]
                return 0.0
            for at, r, t in self._log:  # oldest first: when will enough have expired?
                used_r, used_t = used_r - r, used_t - t
                if used_r + requests <= self.rpm and used_t + tokens <= self.tpm:
                    return at + self.window_s - now
            return self.window_s  # unreachable: an empty log always has room

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


# KEYS: log (zset of "id:requests:tokens" scored by ms), totals (hash r/t), pause flag.
# ARGV: window_ms, max_requests, max_tokens, requests, tokens, unique id.
# Returns 0 when granted, else the milliseconds to wait.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = redis.call('PTTL', KEYS[3])
if paused > 0 then return paused end
local window = tonumber(ARGV[1])
local max_r, max_t = tonumber(ARGV[2]), tonumber(ARGV[3])
local req, tok = tonumber(ARGV[4]), tonumber(ARGV[5])
local function costs(member)
  local r, k = string.match(member, ':(%d+):(%d+)$')
  return tonumber(r), tonumber(k)
end
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window)
if #old > 0 then
  local gone_r, gone_t = 0, 0
  for _, m in ipairs(old) do
    local r, k = costs(m)
    gone_r, gone_t = gone_r + r, gone_t + k
  end
  redis.call('HINCRBY', KEYS[2], 'r', -gone_r)
  redis.call('HINCRBY', KEYS[2], 't', -gone_t)
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
end
local used_r = tonumber(redis.call('HGET', KEYS[2], 'r') or '0')
local used_t = tonumber(redis.call('HGET', KEYS[2], 't') or '0')
if used_r + req <= max_r and used_t + tok <= max_t then
  redis.call('ZADD', KEYS[1], now, ARGV[6] .. ':' .. req .. ':' .. tok)
  redis.call('HINCRBY', KEYS[2], 'r', req)
  redis.call('HINCRBY', KEYS[2], 't', tok)
  redis.call('PEXPIRE', KEYS[1], window)
  redis.call('PEXPIRE', KEYS[2], window)
  return 0
end
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local r, k = costs(entries[i])
  used_r, used_t = used_r - r, used_t - k
  if used_r + req <= max_r and used_t + tok <= max_t then
    return math.max(1, tonumber(entries[i + 1]) + window - now)
  end
end
return window
"""

_PAUSE_LUA = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return 0
"""


class RedisRateLimiter(_WindowLimiter):
    """The sliding-window limit shared through Redis by every process using `name`."""

    def __init__(self, redis_url: str, *, rpm: int, tpm: int, name: str = "gemini",
                 window_s: float = 60.0, max_wait_s: float = 120.0, client: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(rpm=rpm, tpm=tpm, window_s=window_s, max_wait_s=max_wait_s, sleep=sleep)
        import redis

        self._redis = client or redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        # The {name} hash tag keeps the three keys in one slot on Redis Cluster.
        base = f"{redis_keys.RATELIMIT_PREFIX}{{{name}}}"
        self._keys = [f"{base}:log", f"{base}:totals", f"{base}:pause"]
        self._acquire = self._redis.register_script(_ACQUIRE_LUA)
        self._pause = self._redis.register_script(_PAUSE_LUA)

    def _try(self, requests: int, tokens: int) -> float:
        args = [int(self.window_s * 1000), self.rpm, self.tpm, requests, tokens, uuid.uuid4().hex]
        return int(self._run(self._acquire, args)) / 1000.0

    def pause(self, seconds: float) -> None:
        self._run(self._pause, [max(1, int(seconds * 1000))], keys=self._keys[2:])

    def _run(self, script: Any, args: list[Any], keys: list[str] | None = None) -> Any:
        import redis

        try:
            return script(keys=keys or self._keys, args=args)
        except redis.RedisError as exc:
            raise TransientError(f"rate limiter: Redis unavailable ({exc.__class__.__name__})") from None

    def close(self) -> None:
        self._redis.close()
