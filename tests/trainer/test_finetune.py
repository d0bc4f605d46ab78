"""`topicq train --finetune`: a version with its own tuned encoder, found again by evaluate and workers.

One small real tuning run (SetFit on the CPU, two steps) serves every test of
the module; the tuned encoder is exported, quantised and checked for real.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.errors import ConfigError, ModelError
from shared.model import registry
from shared.model.embedders import kind_for_id, make_embedder, make_embedder_for
from shared.model.embedders.tuned import ENCODER_FILE, file_tag
from shared.model.store import TopicModel
from shared.settings import Settings
from shared.wire.producer import Producer
from testkit.factories import labelled_posts
from testkit.tables import post_rows, write_table
from testkit.worker_process import WorkerProcess, count_rows, wait_for_rows, worker_env
from trainer.finetune import FinetuneConfig, tune_encoder
from trainer.train import TrainResult, run_evaluation, run_training
from worker.worker_state import worker_embedder

TINY = FinetuneConfig(steps=2, batch_size=8, max_tokens=32)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TrainResult, Settings, Path]]:
    home = tmp_path_factory.mktemp("tuned")
    settings = Settings(topicq_home=home, database_url=f"sqlite:///{home / 'topicq.db'}")
    table = write_table(home / "posts.csv", post_rows(per_topic=12))
    # The encoder given as an object (the Python API), as a kind name on the command line.
    result = run_training(dataset=str(table), test_size=0.25, finetune=TINY, epochs=20, self_training=1.0,
                          embedder=make_embedder("local-onnx", settings), promote=True, progress=False,
                          settings=settings)
    yield result, settings, table


@pytest.mark.slow
def test_the_version_keeps_its_tuned_encoder_under_an_id_naming_the_file(
        tuned: tuple[TrainResult, Settings, Path]) -> None:
    result, settings, _ = tuned
    encoder = result.directory / ENCODER_FILE
    meta = json.loads((result.directory / "model.json").read_text())
    assert encoder.is_file()
    assert meta["embedder_id"] == f"local:all-MiniLM-L6-v2:384:256:onnx-int8:tuned-{file_tag(encoder)}"
    assert kind_for_id(meta["embedder_id"]) == ("local-onnx-tuned", 256)
    assert meta["training"]["finetune"]["steps"] == TINY.steps
    assert meta["training"]["finetune"]["loss"].startswith("batch-hard triplet")
    assert meta["training"]["finetune"]["mean_cosine_to_torch"] >= 0.98
    assert result.metrics["accuracy"] >= 0.5  # three topics: chance is 1/3
    # Tuning moved the vectors: the tuned encoder is not the packaged one under another name.
    text = ["the shuttle reached orbit after the launch"]
    tuned_vector = make_embedder_for(meta["embedder_id"], settings, result.directory).embed(text)
    packaged_vector = make_embedder("local-onnx", settings).embed(text)
    assert float(np.dot(tuned_vector[0], packaged_vector[0])) < 0.99999


@pytest.mark.slow
def test_evaluate_and_a_worker_on_auto_embed_with_the_versions_encoder(
        tuned: tuple[TrainResult, Settings, Path]) -> None:
    result, settings, table = tuned
    again = run_evaluation("topics", dataset=str(table), test_size=0.25, progress=False, settings=settings)
    assert again.metrics["accuracy"] == result.metrics["accuracy"]
    embedder = worker_embedder(settings.model_copy(update={"embedder": "auto"}))
    assert embedder.id == json.loads((result.directory / "model.json").read_text())["embedder_id"]


@pytest.mark.slow
def test_a_changed_encoder_file_is_refused_by_the_store_and_the_embedder(
        tuned: tuple[TrainResult, Settings, Path], tmp_path: Path) -> None:
    result, settings, _ = tuned
    copy = tmp_path / "version"
    shutil.copytree(result.directory, copy)
    info = registry.get_version(settings.db_url, name="topics", version=result.version)
    with (copy / ENCODER_FILE).open("ab") as file:
        file.write(b"\0")
    with pytest.raises(ModelError, match="changed since registration"):
        TopicModel.load(copy, info.sha256)
    with pytest.raises(ModelError, match="is not the encoder"):
        make_embedder_for(info.embedder_id, settings, copy)
    (copy / ENCODER_FILE).unlink()
    with pytest.raises(ModelError, match="is missing"):
        make_embedder_for(info.embedder_id, settings, copy)
    with pytest.raises(ConfigError, match="name the version"):
        make_embedder_for(info.embedder_id, settings)


def test_finetune_starts_from_the_local_encoder_only(sqlite_url: str, tmp_path: Path) -> None:
    table = write_table(tmp_path / "posts.csv", post_rows(per_topic=12))
    settings = Settings(database_url=sqlite_url)
    for embedder in ("fake", make_embedder("fake", settings)):
        with pytest.raises(ConfigError, match="--finetune tunes the local encoder"):
            run_training(dataset=str(table), finetune=TINY, embedder=embedder, progress=False,
                         settings=settings)


def test_finetune_needs_two_labels_with_two_posts_each(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="two labels with two training posts"):
        tune_encoder(["rocket launch", "orbit", "vaccine"], ["space", "space", "med"], tmp_path, TINY,
                     serving_tokens=256, progress=False)
    assert not list(tmp_path.iterdir())  # refused before the tuning process starts


@pytest.mark.slow
def test_a_worker_process_serves_the_tuned_version(tuned: tuple[TrainResult, Settings, Path], redis_url: str,
                                                   tmp_path: Path) -> None:
    result, settings, _ = tuned
    env = worker_env(settings.db_url, redis_url, tmp_path, EMBEDDER="auto",
                     MODEL_DIR=str(settings.models_path), TOPICQ_HOME=str(settings.topicq_home))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        assert "tuned-" in worker.log()
        producer = Producer(settings.model_copy(update={"queue": env["QUEUE"], "redis_url": redis_url}))
        try:
            for post_id, text, _ in labelled_posts(4, seed=7):
                producer.send(producer.validate(post_id, text, {}))
        finally:
            producer.close()
        assert wait_for_rows(settings.db_url, 12, timeout=120) == 12, worker.log()[-3000:]
        assert count_rows(settings.db_url, status="done", model_version=result.version) == 12
    finally:
        worker.stop()
