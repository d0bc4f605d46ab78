"""The rpm/tpm limiter: the algorithm in memory, and the same limit shared through Redis."""

from __future__ import annotations

import threading
import time

import pytest

from shared.errors import RateLimitedError, TransientError
from shared.model.embedders.ratelimit import MemoryRateLimiter, RedisRateLimiter, estimate_tokens


class FakeTime:
    """A clock that only moves when the limiter sleeps: tests of minutes run in microseconds."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def memory_limiter(t: FakeTime, rpm: int = 10, tpm: int = 10**6, max_wait_s: float = 600) -> MemoryRateLimiter:
    return MemoryRateLimiter(rpm=rpm, tpm=tpm, max_wait_s=max_wait_s, clock=t.clock, sleep=t.sleep)


def test_tokens_are_estimated_at_four_characters_and_capped() -> None:
    assert estimate_tokens("") == 1
    assert estimate_tokens("x" * 400) == 100
    assert estimate_tokens("x" * 100_000) == 2048  # the service truncates at 2,048 tokens


def test_requests_beyond_the_minute_wait_for_the_oldest_to_expire() -> None:
    t = FakeTime()
    limiter = memory_limiter(t, rpm=10)
    for _ in range(4):
        assert limiter.acquire(2, 1) == 0
    t.now = 30.0
    limiter.acquire(2, 1)  # 10 of 10 used
    assert limiter.acquire(1, 1) >= 30.0  # waits until the first grant (t=0) leaves the window
    assert 60.0 <= t.now <= 60.1


def test_tokens_per_minute_bind_too() -> None:
    t = FakeTime()
    limiter = memory_limiter(t, rpm=1000, tpm=1000)
    limiter.acquire(1, 900)
    limiter.acquire(1, 200)
    assert t.now >= 60.0


def test_a_call_larger_than_the_quota_goes_through_alone() -> None:
    t = FakeTime()
    limiter = memory_limiter(t, rpm=10)
    assert limiter.acquire(100, 1) == 0
    limiter.acquire(1, 1)
    assert t.now >= 60.0


def test_waiting_is_bounded() -> None:
    t = FakeTime()
    limiter = memory_limiter(t, rpm=1, max_wait_s=5)
    limiter.acquire(1, 1)
    with pytest.raises(RateLimitedError) as caught:
        limiter.acquire(1, 1)
    assert 59 < (caught.value.retry_after or 0) <= 60
    assert t.slept == []


def test_pause_holds_everyone_back() -> None:
    t = FakeTime()
    limiter = memory_limiter(t)
    limiter.pause(7.0)
    assert limiter.acquire(1, 1) >= 7.0


def redis_limiter(url: str, rpm: int, window_s: float = 0.5, **options: float) -> RedisRateLimiter:
    return RedisRateLimiter(url, rpm=rpm, tpm=10**6, name="test", window_s=window_s, **options)


def test_two_limiters_sharing_redis_share_one_limit(redis_url: str) -> None:
    first, second = redis_limiter(redis_url, rpm=10), redis_limiter(redis_url, rpm=10)
    assert first.acquire(6, 6) == 0
    assert second.acquire(4, 4) == 0  # 10 of 10 used between them
    started = time.monotonic()
    waited = second.acquire(1, 1)
    assert waited > 0.3 and time.monotonic() - started > 0.3
    first.close()
    second.close()


def test_workers_in_parallel_stay_within_the_limit(redis_url: str) -> None:
    # Given two "workers" (limiters) with four threads each, 10 texts per 0.5 s between them
    limiters = [redis_limiter(redis_url, rpm=10), redis_limiter(redis_url, rpm=10)]
    grants: list[float] = []
    lock = threading.Lock()

    def worker(limiter: RedisRateLimiter) -> None:
        for _ in range(4):
            limiter.acquire(1, 1)
            with lock:
                grants.append(time.monotonic())

    # When they ask for 32 texts in all
    threads = [threading.Thread(target=worker, args=(lim,)) for lim in limiters for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then it takes at least three more windows, and no window (with a little clock slack) holds more than 10
    assert len(grants) == 32
    assert time.monotonic() - started >= 1.4
    grants.sort()
    for i, at in enumerate(grants):
        assert sum(1 for other in grants[i:] if other < at + 0.45) <= 10


def test_a_pause_is_seen_by_every_limiter(redis_url: str) -> None:
    first, second = redis_limiter(redis_url, rpm=100), redis_limiter(redis_url, rpm=100)
    first.pause(0.3)
    first.pause(0.1)  # a shorter pause never cuts a longer one short
    started = time.monotonic()
    second.acquire(1, 1)
    assert time.monotonic() - started >= 0.25


def test_bounded_wait_through_redis(redis_url: str) -> None:
    limiter = redis_limiter(redis_url, rpm=1, window_s=30, max_wait_s=1)
    limiter.acquire(1, 1)
    with pytest.raises(RateLimitedError) as caught:
        limiter.acquire(1, 1)
    assert 29 < (caught.value.retry_after or 0) <= 30


def test_redis_down_is_transient() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", rpm=10, tpm=10)
    with pytest.raises(TransientError, match="Redis unavailable"):
        limiter.acquire(1, 1)
