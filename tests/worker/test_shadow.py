"""The challenger in shadow, in process: one embed call per batch feeds both versions (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from shared.database.results import query_results, stats
from shared.improvement.drift_sums import window_sums
from shared.model import registry
from shared.model.embedders.fake import FakeEmbedder
from shared.model.store import MODEL_FILE
from shared.settings import Settings
from testkit.factories import labelled_posts, register_fake_model
from worker.after_batch import make_after_batch
from worker.pipeline import process
from worker.served_model import ServedModel


def payloads(per_topic: int, seed: int) -> list[dict[str, object]]:
    return [{"id": pid, "text": text, "metadata": {"truth": label}}
            for pid, text, label in labelled_posts(per_topic, seed=seed)]


def run(settings: Settings, embedder: FakeEmbedder, batch: list[dict[str, object]]) -> None:
    models = ServedModel(settings.db_url, name=settings.model_name, alias="production",
                         embedder=embedder, refresh_s=0)
    report = process(batch, settings=settings, models=models, cache_embeddings=False,
                     followers=make_after_batch(settings))
    assert report.error is None and report.retry == []


def test_a_staging_version_gets_a_row_per_post_from_the_same_embed_call(db_url: str, tmp_path: Path) -> None:
    # Given production version 1 and a challenger, version 2, on the `staging` alias
    settings = Settings(database_url=db_url, model_dir=tmp_path / "models", embedder="fake", model_refresh_s=0)
    production = register_fake_model(db_url, settings.models_path, seed=0)
    challenger = register_fake_model(db_url, settings.models_path, seed=1, promote=False)
    registry.promote(db_url, name="topics", version=challenger, alias="staging")
    embedder = FakeEmbedder()

    # When one batch of 30 posts is processed
    run(settings, embedder, payloads(10, seed=5))

    # Then the texts were embedded once, and both versions have a done row for every post
    assert embedder.calls == [30]
    rows = query_results(db_url, shadow=True)
    by_version = {v: [r for r in rows if r["model_version"] == v] for v in (production, challenger)}
    assert [len(by_version[v]) for v in (production, challenger)] == [30, 30]
    assert {r["status"] for r in rows} == {"done"}
    assert {r["post_id"] for r in by_version[challenger]} == {r["post_id"] for r in by_version[production]}
    assert sum(r["label"] == r["metadata"]["truth"] for r in by_version[challenger]) >= 27
    # and production's view (results, stats) leaves the shadow rows out unless asked
    assert {r["model_version"] for r in query_results(db_url)} == {production}
    assert stats(db_url)["by_model"] == {f"topics:{production}": 30}
    assert stats(db_url, shadow=True)["by_model"] == {f"topics:{production}": 30, f"topics:{challenger}": 30}
    assert len(query_results(db_url, model=f"topics:{challenger}")) == 30
    # and the drift sums count the batch under each version
    for version in (production, challenger):
        [window] = window_sums(db_url, model_name="topics", model_version=version,
                               since=rows[-1]["processed_at"].replace(hour=0, minute=0, second=0), window_s=86400)
        assert window.posts == 30 and sum(window.label_counts.values()) == 30


def test_a_challenger_that_cannot_load_costs_no_production_row(
        db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Given a challenger whose model file was altered after registration
    settings = Settings(database_url=db_url, model_dir=tmp_path / "models", embedder="fake", model_refresh_s=0)
    production = register_fake_model(db_url, settings.models_path, seed=0)
    challenger = register_fake_model(db_url, settings.models_path, seed=1, promote=False)
    registry.promote(db_url, name="topics", version=challenger, alias="staging")
    (settings.models_path / "topics" / str(challenger) / MODEL_FILE).write_bytes(b"altered")

    # When a batch is processed
    with caplog.at_level(logging.ERROR):
        run(settings, FakeEmbedder(), payloads(4, seed=6))

    # Then production has every row, the challenger none, and the log says why
    rows = query_results(db_url, shadow=True)
    assert {(r["model_version"], r["status"]) for r in rows} == {(production, "done")} and len(rows) == 12
    assert f"not scoring topics:{challenger} (staging) in shadow" in caplog.text
