"""EMBEDDER=auto: the alias moving to a version of another embedder swaps the (version, embedder) pair
between batches; with a set EMBEDDER such a version is refused as before. In process, on SQLite."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from shared.database.results import query_results
from shared.model import registry
from shared.model.embedders import make_embedder
from shared.model.embedders.fake import FakeEmbedder
from shared.model.embedders.onnx import OnnxEmbedder
from shared.settings import Settings
from testkit.factories import labelled_posts, register_fake_model
from worker.after_batch import make_after_batch
from worker.pipeline import process
from worker.presence import WorkerPresence, serving_workers
from worker.served_model import ServedModel
from worker.worker_state import build_worker_state, version_embedder

WIDE, NARROW = "fake:bow:64", "fake:bow:32"  # two embedders: a model of one cannot read the other's vectors


def make_settings(sqlite_url: str, tmp_path: Path, embedder: str = "auto", **more: object) -> Settings:
    return Settings(database_url=sqlite_url, model_dir=tmp_path / "models", embedder=embedder,
                    model_refresh_s=0, **more)  # type: ignore[arg-type]


def posts(prefix: str, seed: int = 5) -> list[dict[str, object]]:
    """Nine posts; the same texts for every prefix, so a second batch can hit the embedding cache."""
    return [{"id": f"{prefix}-{i}", "text": text, "metadata": {"truth": label}}
            for i, (_, text, label) in enumerate(labelled_posts(3, seed=seed))]


def rows_of(db_url: str, prefix: str) -> list[dict[str, object]]:
    return [r for r in query_results(db_url, limit=None) if str(r["post_id"]).startswith(prefix)]


def promote_narrow(settings: Settings) -> int:
    version = register_fake_model(settings.db_url, settings.models_path, seed=1, promote=False,
                                  embedder=FakeEmbedder(dim=32))
    registry.promote(settings.db_url, name="topics", version=version)
    return version


def test_on_auto_the_next_batch_is_served_by_the_new_version_with_its_embedder(
        sqlite_url: str, redis_url: str, tmp_path: Path) -> None:
    # Given a worker on EMBEDDER=auto serving version 1, trained with the 64-wide fake embedder
    settings = make_settings(sqlite_url, tmp_path, redis_url=redis_url)
    first = register_fake_model(sqlite_url, settings.models_path)
    runtime = build_worker_state(settings)
    assert process(posts("a"), settings=settings, models=runtime.models).error is None
    assert {(r["model_version"], r["embedder_id"]) for r in rows_of(sqlite_url, "a")} == {(first, WIDE)}

    # When the alias moves to version 2, trained with the 32-wide one
    second = promote_narrow(settings)
    report = process(posts("b"), settings=settings, models=runtime.models)

    # Then the same texts (cached under the old embedder) are embedded again and classified by version 2
    assert report.error is None and report.retry == []
    rows = rows_of(sqlite_url, "b")
    assert {(r["model_version"], r["embedder_id"], r["status"]) for r in rows} == {(second, NARROW, "done")}
    assert sum(r["label"] == r["metadata"]["truth"] for r in rows) >= 8  # type: ignore[index]
    # and what names the embedder follows the swap: the runtime, the metrics label, the status in Redis
    assert runtime.embedder.id == runtime.models.embedder_id == NARROW
    assert runtime.presence.embedder == NARROW
    [state] = serving_workers(redis_url)
    assert state.serving == f"topics:{second}" and state.refused is None


def test_with_a_set_embedder_a_version_of_another_embedder_is_refused_as_before(
        sqlite_url: str, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(sqlite_url, tmp_path, embedder="fake", redis_url=redis_url)
    first = register_fake_model(sqlite_url, settings.models_path)
    runtime = build_worker_state(settings)
    assert process(posts("a"), settings=settings, models=runtime.models).error is None

    second = promote_narrow(settings)
    with caplog.at_level(logging.ERROR, logger="worker.served_model"):
        assert process(posts("b"), settings=settings, models=runtime.models).error is None

    assert {(r["model_version"], r["embedder_id"]) for r in rows_of(sqlite_url, "b")} == {(first, WIDE)}
    assert runtime.models.embedder_id == WIDE
    assert f"cannot switch to topics:{second}" in caplog.text and NARROW in caplog.text
    [state] = serving_workers(redis_url)
    assert state.serving == f"topics:{first}" and state.refused == f"topics:{second}"


class IdOnly(FakeEmbedder):
    """Vectors of the fake embedder under another embedder's id: a version registered as trained with it."""

    def __init__(self, embedder_id: str) -> None:
        super().__init__()
        self.id = embedder_id


@pytest.mark.parametrize("embedder_id, why", [
    ("local:all-MiniLM-L6-v2:384:256:onnx-int8:tuned-0123456789abcdef", "encoder.onnx is missing"),
    ("gemini:gemini-embedding-001:768:CLASSIFICATION", "needs an API key"),
    ("local:some-other-model:768:512", "no embedder here produces"),
    ("fake:bag:64", "the one built here is 'fake:bow:64'"),
])
def test_a_version_whose_embedder_cannot_be_built_is_refused_and_the_old_pair_kept(
        sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, embedder_id: str, why: str) -> None:
    settings = make_settings(sqlite_url, tmp_path)
    first = register_fake_model(sqlite_url, settings.models_path)
    states: list[WorkerPresence] = []
    models = ServedModel(sqlite_url, name="topics", alias="production", embedder=FakeEmbedder(),
                         embedder_for=version_embedder(settings), refresh_s=0, report=states.append)
    assert models.current().meta.version == first

    unservable = register_fake_model(sqlite_url, settings.models_path, seed=1, embedder=IdOnly(embedder_id))
    with caplog.at_level(logging.ERROR, logger="worker.served_model"):
        for _ in range(2):
            served = models.snapshot()
            assert (served.model.meta.version, served.embedder.id) == (first, WIDE)

    [logged] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]  # once
    assert f"keeping topics:{first}: cannot switch to topics:{unservable}" in logged and why in logged
    assert states[-1].serving == f"topics:{first}" and states[-1].refused == f"topics:{unservable}"
    assert why in str(states[-1].reason)
    assert process(posts("a"), settings=settings, models=models).error is None
    assert {(r["model_version"], r["embedder_id"]) for r in rows_of(sqlite_url, "a")} == {(first, WIDE)}


class GatedEmbedder(FakeEmbedder):
    """The fake embedder, holding its first batch until told to go on: a batch caught mid-way."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding, self.go_on = threading.Event(), threading.Event()

    def embed(self, texts: list[str]) -> np.ndarray:
        if not self.embedding.is_set():
            self.embedding.set()
            assert self.go_on.wait(30)
        return super().embed(texts)


def test_a_batch_that_took_its_pair_before_the_swap_is_finished_with_that_pair(
        sqlite_url: str, tmp_path: Path) -> None:
    # Given a worker on auto whose batch is embedding with version 1's embedder
    settings = make_settings(sqlite_url, tmp_path)
    first = register_fake_model(sqlite_url, settings.models_path)
    embedder = GatedEmbedder()
    models = ServedModel(sqlite_url, name="topics", alias="production", embedder=embedder,
                         embedder_for=version_embedder(settings), refresh_s=0)
    in_flight = threading.Thread(target=process, args=(posts("a"),),
                                 kwargs={"settings": settings, "models": models, "cache_embeddings": False})
    in_flight.start()
    try:
        assert embedder.embedding.wait(30)

        # When the alias moves to a version of another embedder and the next batch takes its pair
        second = promote_narrow(settings)
        served = models.snapshot()
        assert (served.model.meta.version, served.embedder.id) == (second, NARROW)
    finally:
        embedder.go_on.set()
        in_flight.join(30)

    # Then the batch in flight is classified by version 1 on version 1's vectors, the next by version 2
    rows = rows_of(sqlite_url, "a")
    assert {(r["model_version"], r["embedder_id"], r["status"]) for r in rows} == {(first, WIDE, "done")}
    assert len(rows) == 9 and sum(r["label"] == r["metadata"]["truth"] for r in rows) >= 8  # type: ignore[index]
    assert process(posts("b"), settings=settings, models=models).error is None
    assert {(r["model_version"], r["embedder_id"]) for r in rows_of(sqlite_url, "b")} == {(second, NARROW)}


@pytest.mark.slow  # trains two versions and scores a challenger
def test_the_challenger_is_scored_only_on_batches_of_its_own_embedder(
        sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Given production on the 64-wide embedder and a challenger on `staging` trained with the 32-wide one
    settings = make_settings(sqlite_url, tmp_path)
    register_fake_model(sqlite_url, settings.models_path)
    challenger = register_fake_model(sqlite_url, settings.models_path, seed=2, promote=False,
                                     embedder=FakeEmbedder(dim=32))
    registry.promote(sqlite_url, name="topics", version=challenger, alias="staging")
    models = ServedModel(sqlite_url, name="topics", alias="production", embedder=FakeEmbedder(),
                         embedder_for=version_embedder(settings), refresh_s=0)
    followers = make_after_batch(settings)

    # When batches run before and after production moves to a version of the challenger's embedder
    with caplog.at_level(logging.ERROR, logger="worker.shadow"):
        for prefix in ("a", "b"):
            process(posts(prefix), settings=settings, models=models, followers=followers)
    second = promote_narrow(settings)
    process(posts("c"), settings=settings, models=models, followers=followers)

    # Then it is refused (logged once) while production embeds otherwise, and scored once it does not
    shadow = [r for r in query_results(sqlite_url, shadow=True, limit=None) if r["model_version"] == challenger]
    assert {str(r["post_id"])[0] for r in shadow} == {"c"} and len(shadow) == 9
    assert {r["embedder_id"] for r in shadow} == {NARROW}
    assert {r["model_version"] for r in rows_of(sqlite_url, "c")} == {second}
    [logged] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"not scoring topics:{challenger} (staging) in shadow" in logged and NARROW in logged
    assert followers.failures == 0


@pytest.mark.slow  # runs the real int8 encoder
def test_on_auto_a_version_of_the_real_int8_encoder_is_served_with_it(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(sqlite_url, tmp_path)
    register_fake_model(sqlite_url, settings.models_path)
    models = ServedModel(sqlite_url, name="topics", alias="production", embedder=FakeEmbedder(),
                         embedder_for=version_embedder(settings), refresh_s=0)
    assert models.embedder_id == WIDE and models.current()

    encoder = make_embedder("local-onnx", settings)
    second = register_fake_model(sqlite_url, settings.models_path, seed=1, embedder=encoder)
    assert process(posts("a"), settings=settings, models=models).error is None

    assert isinstance(models.embedder, OnnxEmbedder) and models.embedder is not encoder
    rows = rows_of(sqlite_url, "a")
    assert {(r["model_version"], r["embedder_id"], r["status"]) for r in rows} == {(second, encoder.id, "done")}
    assert sum(r["label"] == r["metadata"]["truth"] for r in rows) >= 8  # type: ignore[index]
