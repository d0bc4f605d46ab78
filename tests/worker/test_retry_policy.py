"""One retry policy for every error a batch meets (worker/retry_policy.py), agreeing with shared/errors.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import (
    ConfigError,
    DatabaseUnavailableError,
    InvalidPostError,
    ModelError,
    RateLimitedError,
    TransientError,
)
from shared.settings import Settings
from worker.retry_policy import RetryPolicy


def policy(**overrides: object) -> RetryPolicy:
    values: dict[str, object] = {"retry_base_s": 2.0, "retry_max_s": 300.0, "max_retries": 5,
                                 "visibility_timeout_s": 600}
    values.update(overrides)
    return RetryPolicy(Settings(**values))  # type: ignore[arg-type]


def test_an_outage_of_our_database_spends_no_attempt() -> None:
    decision = policy().decide(DatabaseUnavailableError("down"), attempt=3)
    assert not decision.spend_attempt and 2.0 <= decision.delay_s <= 16.0


@pytest.mark.parametrize("error, floor", [(RateLimitedError("429", retry_after=42.0), 42.0),
                                          (ConfigError("key refused"), 300.0),
                                          (ModelError("no production version"), 300.0),
                                          (TransientError("503"), 0.0)])
def test_every_retryable_error_spends_an_attempt_and_waits_at_least_its_floor(error, floor) -> None:
    retry = policy()
    assert retry.retries(error)
    for attempt in range(5):
        decision = retry.decide(error, attempt)
        assert decision.spend_attempt and floor <= decision.delay_s <= max(floor, 2.0 * 2**attempt)


def test_a_bad_post_is_never_retried() -> None:
    assert not policy().retries(InvalidPostError("empty text", post_id="p"))


def test_no_countdown_outlasts_half_the_visibility_timeout() -> None:
    retry = policy(visibility_timeout_s=600)
    assert retry.countdown(due_at=1_000.0 + 3_600, now=1_000.0) == 300.0  # the daily-quota wait, in steps
    assert retry.countdown(due_at=1_010.0, now=1_000.0) == 10.0
    assert retry.countdown(due_at=990.0, now=1_000.0) == 0.0


def test_a_database_down_before_the_first_model_load_spends_no_attempt(tmp_path: Path) -> None:
    from shared.model.embedders.fake import FakeEmbedder
    from worker.pipeline import process
    from worker.served_model import ServedModel

    down = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere"  # nothing listens on port 9
    settings = Settings(database_url=down, model_dir=tmp_path / "models", embedder="fake", max_retries=3,
                        retry_base_s=0.01, retry_max_s=0.05)
    embedder = FakeEmbedder()
    models = ServedModel(down, name="topics", alias="production", embedder=embedder, refresh_s=0)
    report = process([{"id": "p1", "text": "rocket orbit"}], settings=settings, models=models)
    assert [(p.id, p.attempt) for p in report.retry] == [("p1", 0)]  # the post did not fail: no attempt spent
