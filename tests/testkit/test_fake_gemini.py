"""The fake Gemini server speaks docs/architecture.md §8 exactly: checked over raw HTTP, no SDK."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from testkit.fake_gemini import FakeGemini, main, running_fake_gemini

MODEL = "gemini-embedding-001"


def request(text: str, **overrides: Any) -> dict[str, Any]:
    """One entry of `requests`, exactly as google-genai sends it."""
    return {"content": {"parts": [{"text": text}], "role": "user"}, "taskType": "CLASSIFICATION",
            "outputDimensionality": 768, "model": f"models/{MODEL}", **overrides}


def post(fake: FakeGemini | str, body: Any, *, key: str | None = "test-key", version: str = "v1beta",
         model: str = MODEL, query: str = "") -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    base_url = fake if isinstance(fake, str) else fake.base_url
    req = urllib.request.Request(f"{base_url}/{version}/models/{model}:batchEmbedContents{query}",
                                 data=data, method="POST", headers={"Content-Type": "application/json"})
    if key is not None:
        req.add_header("x-goog-api-key", key)
    try:
        with urllib.request.urlopen(req, timeout=5) as reply:
            raw = reply.read()
            status = reply.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def error_of(reply: tuple[int, Any]) -> tuple[int, str, str]:
    status, body = reply
    error = body["error"]
    assert error["code"] == status and set(error) <= {"code", "message", "status", "details"}
    return status, error["status"], error["message"]


def test_the_design_body_gets_vectors_in_order() -> None:
    texts = ["rockets reach orbit", "my car needs a new engine", "rockets reach orbit"]
    with running_fake_gemini() as fake:
        status, body = post(fake, {"requests": [request(t) for t in texts]})
    assert status == 200 and set(body) == {"embeddings"}
    vectors = np.array([e["values"] for e in body["embeddings"]])
    assert vectors.shape == (3, 768)
    assert not np.allclose(np.linalg.norm(vectors, axis=1), 1.0)  # like Gemini below 3,072 dims
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert not np.array_equal(vectors[0], vectors[1])
    [call] = fake.calls
    assert (call.n_texts, call.status, call.outcome, call.task_types, call.dims) == (
        3, 200, "ok", ["CLASSIFICATION"] * 3, [768] * 3)


def test_similar_texts_get_similar_vectors() -> None:
    with running_fake_gemini() as fake:
        _, body = post(fake, {"requests": [request("space shuttle launch orbit"),
                                           request("space shuttle orbit"), request("baking bread")]})
    a, b, c = (np.array(e["values"]) for e in body["embeddings"])
    cos = lambda x, y: x @ y / np.linalg.norm(x) / np.linalg.norm(y)  # noqa: E731
    assert cos(a, b) > 0.5 > cos(a, c)


def test_full_size_vectors_are_normalised_and_v1_works_too() -> None:
    with running_fake_gemini() as fake:
        status, body = post(fake, {"requests": [{"content": {"parts": [{"text": "hi"}]},
                                                 "model": f"models/{MODEL}"}]}, version="v1")
    assert status == 200
    values = np.array(body["embeddings"][0]["values"])
    assert values.shape == (3072,) and np.isclose(np.linalg.norm(values), 1.0)


@pytest.mark.parametrize(("key", "query", "expected"), [
    (None, "", (403, "PERMISSION_DENIED")),
    ("wrong", "", (400, "INVALID_ARGUMENT")),
    (None, "?key=test-key", (200, None)),
])
def test_api_key_is_required(key: str | None, query: str, expected: tuple[int, str | None]) -> None:
    with running_fake_gemini() as fake:
        reply = post(fake, {"requests": [request("hi")]}, key=key, query=query)
    if expected[0] == 200:
        assert reply[0] == 200
    else:
        assert error_of(reply)[:2] == expected
    if key == "wrong":
        assert reply[1]["error"]["details"][0]["reason"] == "API_KEY_INVALID"


@pytest.mark.parametrize(("body", "says"), [
    ({"requests": [request(f"t{i}") for i in range(101)]}, "at most 100 requests"),
    ({"requests": [request("fine"), request("")]}, "requests[1].content.parts[0].text"),
    ({"requests": []}, "must not be empty"),
    ({"requests": [request("x", taskType="SORTING")]}, "task_type"),
    ({"requests": [request("x", outputDimensionality=4096)]}, "between 1 and 3072"),
    ({"requests": [request("x", model="models/other")]}, "must be the model of the URL"),
    ({"requests": [request("x", temperature=1)]}, 'Unknown name "temperature"'),
    (b"{not json", "Invalid JSON payload"),
])
def test_invalid_requests_get_400_invalid_argument(body: Any, says: str) -> None:
    with running_fake_gemini() as fake:
        status, name, message = error_of(post(fake, body))
    assert (status, name) == (400, "INVALID_ARGUMENT") and says in message


def test_unknown_model_is_404() -> None:
    with running_fake_gemini() as fake:
        reply = post(fake, {"requests": [request("x", model="models/nope")]}, model="nope")
    assert error_of(reply)[:2] == (404, "NOT_FOUND")


def test_429_carries_retry_info_and_calls_are_recorded() -> None:
    with running_fake_gemini(script=["429", "429-day"], retry_delay_s=2) as fake:
        minute = post(fake, {"requests": [request("x")]})
        day = post(fake, {"requests": [request("x")]})
        ok = post(fake, {"requests": [request("x")]})
    assert error_of(minute)[:2] == (429, "RESOURCE_EXHAUSTED")
    details = {d["@type"].rsplit(".", 1)[-1]: d for d in minute[1]["error"]["details"]}
    assert details["RetryInfo"] == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}
    assert "PerMinute" in details["QuotaFailure"]["violations"][0]["quotaId"]
    assert "PerDay" in json.dumps(day[1])
    assert ok[0] == 200
    assert [(c.status, c.outcome) for c in fake.calls] == [(429, "429"), (429, "429-day"), (200, "ok")]
    assert all(c.end >= c.start > 0 for c in fake.calls)


def test_faults_at_a_rate() -> None:
    with running_fake_gemini(rate_5xx=0.5, seed=1) as fake:
        statuses = [post(fake, {"requests": [request("x")]})[0] for _ in range(40)]
    assert 10 < statuses.count(503) < 30 and statuses.count(200) == 40 - statuses.count(503)


def test_malformed_replies_and_dropped_connections() -> None:
    with running_fake_gemini(script=["malformed", "drop"]) as fake:
        status, body = post(fake, {"requests": [request("x")]})
        assert status == 200 and isinstance(body, bytes)  # not JSON
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            post(fake, {"requests": [request("x")]})
    assert [c.outcome for c in fake.calls] == ["malformed", "drop"]


def test_daily_limit_counts_texts() -> None:
    with running_fake_gemini(daily_limit=3) as fake:
        first = post(fake, {"requests": [request("a"), request("b")]})
        second = post(fake, {"requests": [request("c"), request("d")]})
    assert first[0] == 200 and second[0] == 429 and "PerDay" in json.dumps(second[1])


def test_cli_help_has_an_example() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "--rate-429" in result.output and "GEMINI_BASE_URL=http://127.0.0.1:8765" in result.output


def test_cli_serves_until_stopped() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "testkit.fake_gemini", "--port", "0", "--script", "503"],
        stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        base_url = line.split(" on ")[1].split(";")[0]
        status, body = post(base_url, {"requests": [request("x")]})
        assert status == 503 and body["error"]["status"] == "UNAVAILABLE"
        assert post(base_url, {"requests": [request("x")]})[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=10)

