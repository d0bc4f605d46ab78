"""GeminiEmbedder through the real google-genai SDK, against the fake Gemini server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from shared.errors import (
    ConfigError,
    InvalidPostError,
    RateLimitedError,
    TransientError,
)
from shared.model.embedders import make_embedder
from shared.model.embedders.base import l2_normalise
from shared.model.embedders.gemini import PROMPT_PREFIX, GeminiEmbedder
from shared.model.embedders.ratelimit import MemoryRateLimiter
from shared.settings import Settings
from testkit.fake_gemini import FakeGemini, fake_vector, running_fake_gemini

KEY = "test-key"


Make = Callable[..., GeminiEmbedder]


@pytest.fixture
def make() -> Iterator[Make]:
    """Builds embedders on the fake with fast test defaults (no SDK retries unless asked,
    short timeouts) and closes them afterwards."""
    built: list[GeminiEmbedder] = []

    def build(fake: FakeGemini, **options: Any) -> GeminiEmbedder:
        options = {"base_url": fake.base_url, "retries": 0, "retry_initial_s": 0.01, "timeout_s": 5.0,
                   **options}
        built.append(GeminiEmbedder(options.pop("api_key", KEY), **options))
        return built[-1]

    yield build
    for gemini in built:
        gemini.close()


def expected(text: str, dim: int = 768) -> np.ndarray:
    return l2_normalise(np.asarray([fake_vector(text, dim)]))[0]


def posts(n: int) -> list[str]:
    return [f"post {i} about {'space' if i % 2 else 'cars'} number {i}" for i in range(n)]


def test_embeds_in_order_unit_length_and_deterministic(make: Make) -> None:
    texts = ["the shuttle reached orbit", "a new engine for my car", "the shuttle reached orbit"]
    with running_fake_gemini() as fake:
        gemini = make(fake)
        vectors = gemini.embed(texts)
        again = gemini.embed(texts[:1])
        gemini.close()

    assert vectors.shape == (3, 768) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    for text, row in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(row, expected(text), atol=1e-6)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[0], again[0])
    # What went over the wire: the task type and dimension of docs/architecture.md §8.
    assert {task for call in fake.calls for task in call.task_types} == {"CLASSIFICATION"}
    assert {dim for call in fake.calls for dim in call.dims} == {768}
    assert gemini.id == "gemini:gemini-embedding-001:768:CLASSIFICATION"


def test_empty_batch_makes_no_call(make: Make) -> None:
    with running_fake_gemini() as fake:
        vectors = make(fake).embed([])
    assert vectors.shape == (0, 768) and not fake.calls


def test_large_batches_are_split_into_calls_of_at_most_100(make: Make) -> None:
    with running_fake_gemini() as fake:
        vectors = make(fake).embed(posts(250))
    assert vectors.shape == (250, 768)
    assert sorted(call.n_texts for call in fake.calls) == [50, 100, 100]
    np.testing.assert_allclose(vectors[249], expected(posts(250)[249]), atol=1e-6)


def test_calls_in_flight_are_bounded(make: Make) -> None:
    with running_fake_gemini(latency_ms=100) as fake:
        make(fake, max_in_flight=3).embed(posts(1000))
    assert len(fake.calls) == 10
    assert fake.max_in_flight == 3  # parallel, but never more than allowed


def test_429_becomes_rate_limited_with_the_servers_retry_delay(make: Make) -> None:
    with running_fake_gemini(script=["429"], retry_delay_s=33) as fake:
        with pytest.raises(RateLimitedError) as caught:
            make(fake, wait_429_s=0).embed(posts(3))
    assert caught.value.retry_after == 33
    assert len(fake.calls) == 1


def test_short_429s_are_waited_out_and_nothing_is_sent_before_retry_delay(make: Make) -> None:
    with running_fake_gemini(script=["429", "ok", "429"], retry_delay_s=0.3) as fake:
        vectors = make(fake, max_in_flight=1, wait_429_s=1.0).embed(posts(300))
    assert vectors.shape == (300, 768)
    calls = sorted(fake.calls, key=lambda c: c.start)
    assert [c.outcome for c in calls] == ["429", "ok", "429", "ok", "ok"]
    for refused, following in zip(calls, calls[1:], strict=False):
        if refused.outcome == "429":
            assert following.start >= refused.end + 0.3


def test_a_429_pauses_the_shared_limiter_for_other_callers(make: Make) -> None:
    limiter = MemoryRateLimiter(rpm=1000, tpm=10**6, max_wait_s=0)
    with running_fake_gemini(script=["429"], retry_delay_s=30) as fake:
        with pytest.raises(RateLimitedError):
            make(fake, wait_429_s=0, limiter=limiter).embed(posts(2))
    with pytest.raises(RateLimitedError) as caught:
        limiter.acquire(1, 1)  # another worker sharing the limit is held back too
    assert 29 < (caught.value.retry_after or 0) <= 30


def test_daily_quota_gives_a_long_backoff_without_waiting_here(make: Make) -> None:
    with running_fake_gemini(daily_limit=5, retry_delay_s=0.2) as fake:
        gemini = make(fake, wait_429_s=10)
        gemini.embed(posts(5))
        started = time.monotonic()
        with pytest.raises(RateLimitedError) as caught:
            gemini.embed(posts(2))
    assert caught.value.retry_after == 3600
    assert "daily quota" in str(caught.value)
    assert time.monotonic() - started < 1 and len(fake.calls) == 2


@pytest.mark.parametrize("fault", ["503", "500", "malformed", "drop"])
def test_server_faults_become_transient(fault: str, make: Make) -> None:
    with running_fake_gemini(script=[fault]) as fake:
        with pytest.raises(TransientError) as caught:
            make(fake).embed(posts(3))
    assert not isinstance(caught.value, RateLimitedError)
    assert caught.value.__class__.__module__ == "shared.errors"


def test_sdk_retries_a_5xx_then_succeeds(make: Make) -> None:
    with running_fake_gemini(script=["503"]) as fake:
        vectors = make(fake, retries=2).embed(posts(3))
    assert vectors.shape == (3, 768)
    assert [c.outcome for c in fake.calls] == ["5xx", "ok"]


def test_a_slow_reply_times_out_as_transient(make: Make) -> None:
    with running_fake_gemini(latency_ms=2000) as fake:
        started = time.monotonic()
        with pytest.raises(TransientError, match="did not answer within 0.2s"):
            make(fake, timeout_s=0.2).embed(posts(2))
        assert time.monotonic() - started < 1.5


def test_a_refused_text_is_isolated_and_the_rest_embedded(make: Make) -> None:
    texts = posts(10)
    texts[3] = "   "
    with running_fake_gemini() as fake:
        outcome = make(fake).embed_each(texts)
    assert list(outcome.rejected) == [3]
    assert "empty" in outcome.rejected[3]
    assert not outcome.vectors[3].any()
    for i in (0, 4, 9):
        np.testing.assert_allclose(outcome.vectors[i], expected(texts[i]), atol=1e-6)
    assert len(fake.calls) <= 9  # bisection: about 2 log2(n) calls, not n


def test_embed_refuses_the_batch_when_a_text_is_refused(make: Make) -> None:
    with running_fake_gemini() as fake:
        with pytest.raises(InvalidPostError, match="text 1"):
            make(fake).embed(["fine", ""])


@pytest.mark.parametrize(("script", "key"), [([], "wrong-key"), (["401"], KEY), (["403"], KEY)])
def test_key_problems_are_config_errors(script: list[str], key: str, make: Make) -> None:
    with running_fake_gemini(script=script) as fake:
        with pytest.raises(ConfigError, match="check GEMINI_API_KEY"):
            make(fake, api_key=key).embed(posts(4))
    assert len(fake.calls) == 1  # a bad key is not bisected text by text


def test_unknown_model_is_a_config_error(make: Make) -> None:
    with running_fake_gemini() as fake:
        with pytest.raises(ConfigError, match="not found"):
            make(fake, model="gemini-embedding-999").embed(posts(1))


def test_gemini_embedding_2_gets_one_prompted_content_per_text(make: Make) -> None:
    texts = ["rockets and orbits", "engines and wheels"]
    with running_fake_gemini() as fake:
        gemini = make(fake, model="gemini-embedding-2", dim=256)
        vectors = gemini.embed(texts)
    assert vectors.shape == (2, 256)
    for text, row in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(row, expected(PROMPT_PREFIX + text, 256), atol=1e-6)
    assert [call.task_types for call in fake.calls] == [[None, None]]


def test_gemini_embedding_2_refuses_empty_texts_itself(make: Make) -> None:
    with running_fake_gemini() as fake:
        outcome = make(fake, model="gemini-embedding-2").embed_each(["", "rockets", " "])
    assert sorted(outcome.rejected) == [0, 2] and outcome.vectors[1].any()
    assert [call.n_texts for call in fake.calls] == [1]  # the prefix alone is never embedded


def test_the_api_key_never_leaks(caplog: pytest.LogCaptureFixture, make: Make) -> None:
    secret = "AIzaSy-very-secret-key-0123456789"
    caplog.set_level("DEBUG")
    seen: list[str] = []
    faults = ["429", "503", "malformed", "drop", "401", "429-day", "ok"]
    with running_fake_gemini(api_key=secret, script=faults, retry_delay_s=0.01) as fake:
        gemini = make(fake, api_key=secret, wait_429_s=0, retries=1)
        seen.append(repr(gemini))
        for _ in faults:
            try:
                gemini.embed_each(["fine", ""])
            except Exception as exc:  # noqa: BLE001 - collecting every message
                seen += [str(exc), repr(exc), repr(exc.__context__), str(exc.__cause__)]
        wrong = make(fake, api_key=secret[::-1])
        with pytest.raises(ConfigError) as caught:
            wrong.embed(["fine"])
        seen += [str(caught.value), repr(caught.value), repr(wrong)]
    assert len(seen) > 10 and caplog.records
    for text in [*seen, caplog.text]:
        assert secret not in text and secret[::-1] not in text


def test_from_settings_needs_a_key() -> None:
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        GeminiEmbedder.from_settings(Settings(embedder="gemini"))


def test_make_embedder_builds_gemini_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Any) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    with running_fake_gemini() as fake:
        monkeypatch.setenv("GEMINI_API_KEY_FILE", str(key_file))
        monkeypatch.setenv("GEMINI_BASE_URL", fake.base_url)
        monkeypatch.setenv("GEMINI_RATE_LIMITER", "memory")
        monkeypatch.setenv("GEMINI_DIM", "128")
        gemini = make_embedder()  # EMBEDDER=auto and a key: gemini
        vectors = gemini.embed(["hello"])
        gemini.close()
    assert isinstance(gemini, GeminiEmbedder)
    assert gemini.id == "gemini:gemini-embedding-001:128:CLASSIFICATION"
    assert vectors.shape == (1, 128) and len(fake.calls) == 1


def test_sdk_base_url_variable_works_when_ours_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_fake_gemini() as fake:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.base_url)
        gemini = GeminiEmbedder.from_settings(
            Settings(gemini_api_key=KEY, gemini_rate_limiter="off", gemini_retries=0))
        assert gemini.base_url is None
        gemini.embed(["hello"])
        gemini.close()
    assert len(fake.calls) == 1


def test_workers_built_from_settings_share_one_limit_in_redis(redis_url: str) -> None:
    with running_fake_gemini() as fake:
        settings = Settings(gemini_api_key=KEY, gemini_base_url=fake.base_url, redis_url=redis_url,
                            gemini_rpm=150, gemini_rate_wait_s=1.0, gemini_retries=0)
        first, second = GeminiEmbedder.from_settings(settings), GeminiEmbedder.from_settings(settings)
        first.embed(posts(100))
        with pytest.raises(RateLimitedError, match="rate limit"):
            second.embed(posts(100))  # 200 texts in a minute is over 150, whichever worker asks
        first.close()
        second.close()
    assert len(fake.calls) == 1


def test_the_rate_limit_spaces_calls_out(make: Make) -> None:
    clock = [0.0]
    limiter = MemoryRateLimiter(rpm=100, tpm=10**6, clock=lambda: clock[0],
                                sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    with running_fake_gemini() as fake:
        make(fake, max_in_flight=1, limiter=limiter).embed(posts(300))
    assert len(fake.calls) == 3
    assert clock[0] >= 120  # 300 texts at 100 per minute: two full windows of waiting
