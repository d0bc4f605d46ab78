"""The classify pipeline without Celery: fake embedder, real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from shared.database.results import query_results, stats
from shared.model.embedders.base import EmbedOutcome
from shared.model.embedders.fake import FakeEmbedder
from testkit.factories import labelled_posts, register_fake_model
from testkit.failing_embedders import FlakyEmbedder
from testkit.in_process import make_settings, server_for
from worker.pipeline import process


class RefusingEmbedder(FakeEmbedder):
    """Refuses texts containing 'forbidden', as Gemini refuses a text with a 400."""

    def embed_each(self, texts: list[str]) -> EmbedOutcome:
        outcome = super().embed_each(texts)
        refused = {i: "400 INVALID_ARGUMENT" for i, t in enumerate(texts) if "forbidden" in t}
        outcome.vectors[list(refused)] = 0
        return EmbedOutcome(outcome.vectors, refused)


def test_batch_is_classified_and_written_once_even_when_delivered_twice(db_url: str, tmp_path: Path) -> None:
    # Given a promoted model and a batch of labelled posts
    settings = make_settings(db_url, tmp_path)
    embedder = FakeEmbedder()
    version = register_fake_model(db_url, settings.models_path)
    posts = labelled_posts(10, seed=7)
    payloads = [{"id": pid, "text": text, "metadata": {"truth": label}} for pid, text, label in posts]

    # When the same batch is processed twice (a redelivery)
    for _ in range(2):
        report = process(payloads, settings=settings, models=server_for(settings, embedder))
        assert report.retry == [] and report.error is None

    # Then there is exactly one done row per post, with the right version and a sound label
    rows = query_results(db_url)
    assert sorted(r["post_id"] for r in rows) == sorted(p[0] for p in posts)
    assert {r["status"] for r in rows} == {"done"}
    assert {r["model_version"] for r in rows} == {version}
    accuracy = np.mean([r["label"] == r["metadata"]["truth"] for r in rows])
    assert accuracy >= 0.9
    for row in rows:
        assert row["received_at"] is not None and row["received_at"] <= row["processed_at"]
        assert row["score"] == pytest.approx(max(row["scores"].values()))
        assert sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    # One embed call for the first delivery; the redelivery's texts all come from the embedding cache.
    assert embedder.calls == [30]


def test_bad_posts_are_rejected_with_reasons_and_the_rest_is_done(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, max_text_chars=100)
    embedder = FakeEmbedder()
    register_fake_model(db_url, settings.models_path)
    payloads = [
        {"id": "ok-1", "text": "rocket launch orbit"},
        {"id": "empty", "text": "   "},
        {"id": "number", "text": 42},
        {"id": "long", "text": "x" * 101},
        {"text": "no id at all"},
        "not an object",
        {"id": "ok-2", "text": "doctor patient therapy"},
    ]
    report = process(payloads, settings=settings, models=server_for(settings, embedder))
    assert report.retry == []
    rows = {r["post_id"]: r for r in query_results(db_url)}
    assert set(rows) == {"ok-1", "ok-2", "empty", "number", "long"}
    assert rows["ok-1"]["status"] == rows["ok-2"]["status"] == "done"
    assert rows["empty"]["status"] == "rejected" and "empty" in rows["empty"]["error"]
    assert "must be a string" in rows["number"]["error"]
    assert "MAX_TEXT_CHARS" in rows["long"]["error"]


def test_text_refused_by_the_embedder_is_rejected_alone(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(sqlite_url, tmp_path)
    embedder = RefusingEmbedder()
    register_fake_model(sqlite_url, settings.models_path, embedder=embedder)
    payloads = [{"id": "a", "text": "rocket orbit"}, {"id": "b", "text": "forbidden words"}]
    process(payloads, settings=settings, models=server_for(settings, embedder))
    rows = {r["post_id"]: r for r in query_results(sqlite_url)}
    assert rows["a"]["status"] == "done"
    assert rows["b"]["status"] == "rejected" and "INVALID_ARGUMENT" in rows["b"]["error"]


def test_transient_failures_are_retried_then_recorded_failed(sqlite_url: str, tmp_path: Path) -> None:
    # Given an embedder that fails more often than MAX_RETRIES (3) allows
    settings = make_settings(sqlite_url, tmp_path)
    embedder = FlakyEmbedder(failures=10)
    register_fake_model(sqlite_url, settings.models_path, embedder=embedder)
    models = server_for(settings, embedder)
    payloads: list[dict] = [{"id": "p1", "text": "rocket orbit"}]
    counts = [0]
    attempts = 0
    # When each retry is fed back as the worker would send it again (attempt count in the header)
    while payloads:
        report = process(payloads, settings=settings, models=models, attempts=counts)
        attempts += 1
        assert report.retry_delay_s <= settings.retry_max_s
        payloads = [p.to_message() for p in report.retry]
        counts = [p.attempt for p in report.retry]
    # Then it was tried MAX_RETRIES times and kept as failed, with its text for retry-failed
    assert attempts == settings.max_retries
    [row] = query_results(sqlite_url)
    assert row["status"] == "failed" and "503" in row["error"] and row["attempts"] == 3


def test_transient_failure_then_success_gives_one_done_row(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(sqlite_url, tmp_path)
    embedder = FlakyEmbedder(failures=1)
    register_fake_model(sqlite_url, settings.models_path, embedder=embedder)
    models = server_for(settings, embedder)
    first = process([{"id": "p1", "text": "rocket orbit"}], settings=settings, models=models)
    assert [p.attempt for p in first.retry] == [1]
    process([p.to_message() for p in first.retry], settings=settings, models=models,
            attempts=[p.attempt for p in first.retry])
    [row] = query_results(sqlite_url)
    assert row["status"] == "done" and row["attempts"] == 2
    assert stats(sqlite_url)["by_status"] == {"done": 1}


def test_worker_refuses_a_model_of_another_embedder(sqlite_url: str, tmp_path: Path) -> None:
    from shared.errors import ModelError

    settings = make_settings(sqlite_url, tmp_path)
    register_fake_model(sqlite_url, settings.models_path, embedder=FakeEmbedder(dim=32))
    with pytest.raises(ModelError, match="not comparable"):
        server_for(settings, FakeEmbedder(dim=64)).current()


def test_promotion_switches_the_served_version(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(sqlite_url, tmp_path)
    embedder = FakeEmbedder()
    first = register_fake_model(sqlite_url, settings.models_path)
    models = server_for(settings, embedder)
    process([{"id": "a", "text": "rocket"}], settings=settings, models=models)
    second = register_fake_model(sqlite_url, settings.models_path, seed=1)
    process([{"id": "b", "text": "rocket"}], settings=settings, models=models)
    versions = {r["post_id"]: r["model_version"] for r in query_results(sqlite_url)}
    assert versions == {"a": first, "b": second} and first != second


@pytest.mark.slow  # fits a two-branch model
def test_a_model_that_reads_words_gets_the_preprocessed_texts(sqlite_url: str, tmp_path: Path) -> None:
    # Given a promoted model with a lexical view (lexicon.json beside model.keras)
    settings = make_settings(sqlite_url, tmp_path)
    embedder = FakeEmbedder()
    register_fake_model(sqlite_url, settings.models_path, lexical=500)
    posts = labelled_posts(10, seed=8)
    payloads = [{"id": pid, "text": text, "metadata": {"truth": label}} for pid, text, label in posts]

    # When a batch is processed
    report = process(payloads, settings=settings, models=server_for(settings, embedder))

    # Then every post is done and labelled from its vector and its words
    assert report.retry == [] and report.error is None
    rows = query_results(sqlite_url)
    assert {r["status"] for r in rows} == {"done"} and len(rows) == 30
    assert np.mean([r["label"] == r["metadata"]["truth"] for r in rows]) >= 0.9


def test_each_batch_logs_one_line_and_each_rejected_post_its_reason(sqlite_url: str, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(sqlite_url, tmp_path)
    embedder = FakeEmbedder()
    version = register_fake_model(sqlite_url, settings.models_path, embedder=embedder)
    with caplog.at_level(logging.INFO, logger="worker.pipeline"):
        process([{"id": "a", "text": "rocket orbit"}, {"id": "b", "text": ""}], settings=settings,
                models=server_for(settings, embedder))
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("batch of 2 posts: 1 done, 1 rejected, 0 failed, 0 to retry")
               and line.endswith(f"model topics:{version}") for line in lines), lines
    assert any(line.startswith("rejected post 'b': invalid post: text") for line in lines), lines


def test_a_model_that_reads_words_reads_the_post_as_sent(db_url: str, tmp_path: Path) -> None:
    """The embedding reads the preprocessed text, which drops parenthesised text; the words branch reads
    the post as sent. Here the topic is only in parentheses, so only the words can tell it."""
    from datetime import UTC, datetime

    from shared.model import registry
    from shared.model.classifier import TopicClassifier
    from shared.model.preprocess import PREPROCESS_VERSION, preprocess
    from shared.model.store import ModelMeta, TopicModel

    settings = make_settings(db_url, tmp_path)
    embedder = FakeEmbedder()
    texts = [f"a note on the matter, number {i % 5} (orbit)" for i in range(20)] + [
        f"a note on the matter, number {i % 5} (therapy)" for i in range(20)]
    labels = ["space"] * 20 + ["med"] * 20
    assert len({preprocess(t) for t in texts}) == 5  # the embedding branch cannot tell the classes
    clf = TopicClassifier(hidden=8, epochs=5, lexical=100, lexical_join="product", seed=0).fit(
        embedder.embed([preprocess(t) for t in texts]), labels, texts=texts)
    meta = ModelMeta(name="topics", version=0, labels=[str(c) for c in clf.classes_], embedder_id=embedder.id,
                     embedder_dim=embedder.dim, preprocess_version=PREPROCESS_VERSION,
                     data_fingerprint="parentheses", created_at=datetime.now(UTC).isoformat())
    registry.publish_version(db_url, settings.models_path, TopicModel(meta, clf),
                             promote_to=registry.DEFAULT_ALIAS)

    payloads = [{"id": "s", "text": "a note on the matter, number 9 (orbit)"},
                {"id": "m", "text": "a note on the matter, number 9 (therapy)"}]
    process(payloads, settings=settings, models=server_for(settings, embedder))

    assert {r["post_id"]: r["label"] for r in query_results(db_url)} == {"s": "space", "m": "med"}
