"""Translating SDK errors: by code and body, so pickled errors are classified the same."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from shared.errors import ConfigError, InvalidPostError, RateLimitedError, TopicqError, TransientError
from shared.model.embedders.gemini_errors import DailyQuotaError, is_daily_quota, retry_delay, translate
from testkit.fake_gemini import running_fake_gemini


def sdk_error(script: str, **switches: Any) -> genai_errors.APIError:
    """The exception the real SDK raises for a reply of the fake server."""
    with running_fake_gemini(script=[script], **switches) as fake:
        client = genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=fake.base_url))
        with pytest.raises(genai_errors.APIError) as caught:
            client.models.embed_content(model="gemini-embedding-001", contents=["hello"])
        client.close()
    return caught.value


def classify(exc: BaseException) -> TopicqError:
    return translate(exc, secret="test-key", model="gemini-embedding-001", timeout_s=30)


@pytest.mark.parametrize(("script", "expected"), [
    ("429", RateLimitedError), ("429-day", DailyQuotaError), ("503", TransientError),
    ("500", TransientError), ("401", ConfigError), ("403", ConfigError), ("404", ConfigError),
    ("400", InvalidPostError),
])
def test_pickled_sdk_errors_are_classified_like_the_originals(script: str, expected: type) -> None:
    original = sdk_error(script, retry_delay_s=7)
    revived = pickle.loads(pickle.dumps(original))
    assert type(revived) is genai_errors.APIError  # the subclass is gone after pickling
    for error in (original, revived):
        translated = classify(error)
        assert type(translated) is expected
        if expected is RateLimitedError:
            assert translated.retry_after == 7  # type: ignore[attr-defined]


def test_daily_quota_error_survives_pickling() -> None:
    error = classify(sdk_error("429-day", retry_delay_s=40))
    revived = pickle.loads(pickle.dumps(error))
    assert isinstance(revived, DailyQuotaError) and revived.retry_after == 3600


def test_retry_delay_formats() -> None:
    def body(delay: Any) -> dict[str, Any]:
        return {"error": {"code": 429, "details": [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}}

    assert retry_delay(body("33s")) == 33
    assert retry_delay(body("0.500s")) == 0.5
    assert retry_delay(body({"seconds": 2, "nanos": 500_000_000})) == 2.5
    assert retry_delay({"error": {"message": "Please retry in 12.5s."}}) == 12.5
    assert retry_delay({"error": {"message": "no hint"}}) is None


def test_per_day_quota_is_recognised_from_the_quota_id_or_the_message() -> None:
    day = {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
           "violations": [{"quotaId": "EmbedContentRequestsPerDayPerUserPerProjectPerModel-FreeTier"}]}
    minute = {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
              "violations": [{"quotaId": "EmbedContentRequestsPerMinutePerProjectPerModel"}]}
    assert is_daily_quota({"error": {"details": [day]}})
    assert not is_daily_quota({"error": {"details": [minute]}})
    assert is_daily_quota({"error": {"message": "Quota exceeded: requests per day"}})


def test_a_400_about_the_key_is_a_config_error_not_a_refused_text() -> None:
    error = genai_errors.ClientError(400, {"error": {
        "code": 400, "message": "API key expired. Please renew the API key.", "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_EXPIRED"}]}})
    assert isinstance(classify(error), ConfigError)


def test_other_400s_are_not_refused_texts() -> None:
    error = genai_errors.ClientError(400, {"error": {
        "code": 400, "message": "User location is not supported for the API use.",
        "status": "FAILED_PRECONDITION"}})
    assert isinstance(classify(error), ConfigError)


def test_the_key_is_masked_even_when_the_server_echoes_it() -> None:
    error = genai_errors.ServerError(500, {"error": {
        "code": 500, "message": "boom for key test-key", "status": "INTERNAL"}})
    translated = classify(error)
    assert "test-key" not in str(translated) and "***" in str(translated)


def test_unknown_exceptions_become_transient_with_the_key_masked() -> None:
    translated = classify(RuntimeError("odd state near test-key"))
    assert type(translated) is TransientError and "test-key" not in str(translated)
