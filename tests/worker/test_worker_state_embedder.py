"""A worker on EMBEDDER=auto embeds with what its production model was trained with."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.model import registry
from shared.model.embedders.local import LocalEmbedder
from shared.model.embedders.onnx import OnnxEmbedder
from shared.settings import Settings
from worker.worker_state import worker_embedder

TORCH_ID = "local:all-MiniLM-L6-v2:384:256"


def _production(db: str, embedder_id: str, tmp_path: Path) -> None:
    registry.register(db, name="topics", version=1, path=tmp_path, sha256="0" * 64,
                      embedder_id=embedder_id, metrics={})
    registry.promote(db, name="topics", version=1)


def test_without_a_model_auto_means_the_int8_onnx_encoder(sqlite_url: str) -> None:
    embedder = worker_embedder(Settings(database_url=sqlite_url))
    assert isinstance(embedder, OnnxEmbedder) and embedder.id.endswith(":onnx-int8")


def test_a_model_trained_on_torch_keeps_its_torch_encoder(sqlite_url: str, tmp_path: Path) -> None:
    _production(sqlite_url, TORCH_ID, tmp_path)
    embedder = worker_embedder(Settings(database_url=sqlite_url))
    assert isinstance(embedder, LocalEmbedder) and embedder.id == TORCH_ID


def test_a_model_of_another_length_gets_its_own_max_tokens(sqlite_url: str, tmp_path: Path) -> None:
    _production(sqlite_url, "local:all-MiniLM-L6-v2:384:128:onnx-fp32", tmp_path)
    embedder = worker_embedder(Settings(database_url=sqlite_url))
    assert embedder.id == "local:all-MiniLM-L6-v2:384:128:onnx-fp32"


def test_a_set_embedder_is_used_as_it_is(sqlite_url: str, tmp_path: Path) -> None:
    _production(sqlite_url, TORCH_ID, tmp_path)
    embedder = worker_embedder(Settings(database_url=sqlite_url, embedder="local-onnx"))
    assert isinstance(embedder, OnnxEmbedder)  # the model server then refuses the torch model


def test_an_id_no_embedder_produces_is_a_one_line_config_error(sqlite_url: str, tmp_path: Path) -> None:
    _production(sqlite_url, "local:some-other-model:768:512:int4", tmp_path)
    with pytest.raises(ConfigError, match="no embedder here produces"):
        worker_embedder(Settings(database_url=sqlite_url))
