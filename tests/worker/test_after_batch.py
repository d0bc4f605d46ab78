"""The followers of a batch on their own thread: the batch returns once its rows are committed."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from shared.database.connection import utcnow
from shared.database.results import query_results
from shared.improvement import drift_sums
from shared.improvement.drift_sums import window_sums
from shared.model.embedders.fake import FakeEmbedder
from shared.model.embedding_cache import lookup as cache_lookup
from shared.model.preprocess import preprocess, text_digest
from shared.settings import Settings
from testkit.factories import labelled_posts, register_fake_model
from worker.after_batch import make_after_batch
from worker.pipeline import process
from worker.served_model import ServedModel


def test_a_batch_returns_while_its_drift_sums_wait_and_they_are_added_once_it_can(sqlite_url: str,
                                                                                  tmp_path: Path) -> None:
    settings = Settings(database_url=sqlite_url, model_dir=tmp_path / "models", embedder="fake",
                        model_refresh_s=0, shadow_alias="")
    version = register_fake_model(sqlite_url, settings.models_path)
    models = ServedModel(settings.db_url, name="topics", alias="production", embedder=FakeEmbedder(),
                         refresh_s=0)
    followers = make_after_batch(settings, background=True)
    batch = [{"id": pid, "text": text} for pid, text, _ in labelled_posts(5, seed=3)]
    since = utcnow() - timedelta(seconds=settings.drift_bucket_s)

    # Given the drift sums held up (another thread of the worker adding to them)
    finished = threading.Event()
    with drift_sums._lock:
        # When a batch is processed
        worker = threading.Thread(target=lambda: (process(batch, settings=settings, models=models,
                                                          cache_embeddings=False, followers=followers),
                                                  finished.set()))
        worker.start()
        # Then it returns with its rows written, its sums not yet added
        assert finished.wait(30), "the batch waited for its followers"
        assert len(query_results(sqlite_url)) == len(batch)
        assert not followers.drain(timeout=0.2)
    # and once the sums can be added, they are
    assert followers.drain(timeout=30)
    windows = window_sums(sqlite_url, model_name="topics", model_version=version, since=since,
                          window_s=3 * settings.drift_bucket_s)
    assert sum(w.posts for w in windows) == len(batch)
    assert followers.failures == 0


def test_without_background_the_batch_follows_before_it_returns(sqlite_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=sqlite_url, model_dir=tmp_path / "models", embedder="fake",
                        model_refresh_s=0, shadow_alias="")
    version = register_fake_model(sqlite_url, settings.models_path)
    models = ServedModel(settings.db_url, name="topics", alias="production", embedder=FakeEmbedder(),
                         refresh_s=0)
    since = utcnow() - timedelta(seconds=settings.drift_bucket_s)
    batch = [{"id": pid, "text": text} for pid, text, _ in labelled_posts(5, seed=3)]
    process(batch, settings=settings, models=models, cache_embeddings=False,
            followers=make_after_batch(settings))
    windows = window_sums(sqlite_url, model_name="topics", model_version=version, since=since,
                          window_s=3 * settings.drift_bucket_s)
    assert sum(w.posts for w in windows) == len(batch)


def test_a_batchs_new_embeddings_are_cached_by_its_followers_after_it_returns(sqlite_url: str,
                                                                              tmp_path: Path) -> None:
    settings = Settings(database_url=sqlite_url, model_dir=tmp_path / "models", embedder="fake",
                        model_refresh_s=0, shadow_alias="")
    register_fake_model(sqlite_url, settings.models_path)
    embedder = FakeEmbedder()
    models = ServedModel(settings.db_url, name="topics", alias="production", embedder=embedder, refresh_s=0)
    followers = make_after_batch(settings, background=True)
    first = [{"id": f"a{pid}", "text": f"{text} first"} for pid, text, _ in labelled_posts(3, seed=1)]
    second = [{"id": f"b{pid}", "text": f"{text} second"} for pid, text, _ in labelled_posts(3, seed=2)]

    # Given the followers busy with a first batch (its drift sums held up)
    with drift_sums._lock:
        process(first, settings=settings, models=models, followers=followers)
        # When a second batch is processed, it returns with its rows and without having cached its vectors
        process(second, settings=settings, models=models, followers=followers)
        assert len(query_results(sqlite_url)) == len(first) + len(second)
        texts = [preprocess(str(p["text"])) for p in second]
        assert cache_lookup(sqlite_url, embedder.id, [text_digest(t) for t in texts]) == {}
    # Then its followers cache them once they get to it
    assert followers.drain(timeout=30)
    assert len(cache_lookup(sqlite_url, embedder.id, [text_digest(t) for t in texts])) == len(second)
