"""One contract, every embedder: what the pipeline relies on, checked on each implementation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from shared.model.embedders import Embedder
from shared.model.embedders.fake import FakeEmbedder
from shared.model.embedders.gemini import GeminiEmbedder
from testkit.fake_gemini import running_fake_gemini

TEXTS = ["The shuttle launch was delayed by weather.", "My car needs new brakes.",
         "The shuttle launch was delayed by weather."]


@pytest.fixture(scope="module")
def local_embedder() -> Embedder:
    """Loaded once: loading the model is most of the cost."""
    from shared.model.embedders.local import LocalEmbedder

    return LocalEmbedder()


@pytest.fixture(params=["fake", "gemini", "local-onnx", pytest.param("local", marks=pytest.mark.slow)])
def embedder(request: pytest.FixtureRequest) -> Iterator[Embedder]:
    if request.param == "fake":
        yield FakeEmbedder()
    elif request.param == "gemini":
        with running_fake_gemini() as fake:
            gemini = GeminiEmbedder("test-key", base_url=fake.base_url, retries=0, timeout_s=5)
            yield gemini
            gemini.close()
    elif request.param == "local-onnx":
        from shared.model.embedders.onnx import OnnxEmbedder

        yield OnnxEmbedder()  # 0.2 s to load once the encoder file is built (make install)
    else:
        yield request.getfixturevalue("local_embedder")


def test_rows_are_float32_unit_vectors_of_dim(embedder: Embedder) -> None:
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), embedder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_same_text_same_vector_and_order_kept(embedder: Embedder) -> None:
    vectors = embedder.embed(TEXTS)
    alone = embedder.embed(TEXTS[1:2])
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    np.testing.assert_allclose(vectors[1], alone[0], atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])


def test_empty_input_gives_an_empty_matrix(embedder: Embedder) -> None:
    vectors = embedder.embed([])
    assert vectors.shape == (0, embedder.dim) and vectors.dtype == np.float32


def test_embed_each_agrees_with_embed(embedder: Embedder) -> None:
    outcome = embedder.embed_each(TEXTS)
    assert outcome.rejected == {}
    np.testing.assert_allclose(outcome.vectors, embedder.embed(TEXTS), atol=1e-5)


def test_id_names_the_vector_space(embedder: Embedder) -> None:
    assert embedder.id.count(":") >= 2 and str(embedder.dim) in embedder.id
