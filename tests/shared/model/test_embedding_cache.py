"""The embedding cache on SQLite and PostgreSQL: a text is embedded once per embedder."""

from __future__ import annotations

import numpy as np
import pytest

from shared.errors import TransientError
from shared.model.embedders.base import EmbedOutcome
from shared.model.embedders.fake import FakeEmbedder
from shared.model.embedding_cache import CachedEmbedder, CacheStats

TEXTS = [f"post number {i} about orbit and moon" for i in range(7)]


def embed_cached(db_url: str, embedder: FakeEmbedder, texts: list[str], chunk_size: int = 256,
                 progress=None) -> tuple[np.ndarray, CacheStats]:  # noqa: ANN001
    cached = CachedEmbedder(embedder, db_url, chunk_size=chunk_size, progress=progress)
    return cached.embed(texts), cached.stats


def test_second_run_comes_from_the_cache(db_url: str) -> None:
    embedder = FakeEmbedder()
    first, stats = embed_cached(db_url, embedder, TEXTS, chunk_size=3)
    assert (stats.hits, stats.misses) == (0, 7)
    assert embedder.calls == [3, 3, 1]

    again, stats = embed_cached(db_url, embedder, list(reversed(TEXTS)) + ["a new post"], chunk_size=3)

    assert (stats.hits, stats.misses) == (7, 1)
    assert embedder.calls == [3, 3, 1, 1]
    np.testing.assert_array_equal(again[:7], first[::-1])
    np.testing.assert_array_equal(first, FakeEmbedder().embed(TEXTS))
    assert again.dtype == np.float32 and again.shape == (8, 64)


def test_repeated_texts_are_embedded_once(db_url: str) -> None:
    embedder = FakeEmbedder()
    vectors, stats = embed_cached(db_url, embedder, ["same", "same", "other"])
    assert embedder.calls == [2] and stats.misses == 2
    np.testing.assert_array_equal(vectors[0], vectors[1])


def test_embedders_do_not_share_entries(db_url: str) -> None:
    embed_cached(db_url, FakeEmbedder(dim=64), TEXTS)
    vectors, stats = embed_cached(db_url, FakeEmbedder(dim=32), TEXTS)
    assert stats.misses == 7 and vectors.shape == (7, 32)


def test_progress_counts_every_text(db_url: str) -> None:
    embed_cached(db_url, FakeEmbedder(), TEXTS[:4])
    steps: list[int] = []
    embed_cached(db_url, FakeEmbedder(), TEXTS, chunk_size=2, progress=steps.append)
    assert steps == [4, 2, 1]


def test_no_texts_no_rows(db_url: str) -> None:
    vectors, stats = embed_cached(db_url, FakeEmbedder(dim=16), [])
    assert vectors.shape == (0, 16) and (stats.hits, stats.misses) == (0, 0)


class FailsAfterOneChunk(FakeEmbedder):
    def embed(self, texts: list[str]) -> np.ndarray:
        if self.calls:
            raise TransientError("service went away")
        return super().embed(texts)


def test_an_interrupted_run_keeps_the_chunks_it_finished(db_url: str) -> None:
    with pytest.raises(TransientError):
        embed_cached(db_url, FailsAfterOneChunk(), TEXTS, chunk_size=3)
    _, stats = embed_cached(db_url, FakeEmbedder(), TEXTS, chunk_size=3)
    assert (stats.hits, stats.misses) == (3, 4)


class RefusesForbidden(FakeEmbedder):
    """Refuses texts with 'forbidden' on their own, as Gemini answers one text with a 400."""

    def embed_each(self, texts: list[str]) -> EmbedOutcome:
        outcome = EmbedOutcome(self.embed(texts))
        outcome.rejected = {i: "400 INVALID_ARGUMENT" for i, t in enumerate(texts) if "forbidden" in t}
        return outcome


def test_a_refused_text_is_not_cached_and_does_not_sink_the_rest(db_url: str) -> None:
    cached = CachedEmbedder(RefusesForbidden(), db_url)
    outcome = cached.embed_each(["orbit", "forbidden words", "moon"])
    assert outcome.rejected == {1: "400 INVALID_ARGUMENT"}
    np.testing.assert_array_equal(outcome.vectors[[0, 2]], FakeEmbedder().embed(["orbit", "moon"]))
    again = CachedEmbedder(RefusesForbidden(), db_url)
    assert again.embed_each(["forbidden words"]).rejected == {0: "400 INVALID_ARGUMENT"}
    assert (again.stats.hits, again.stats.misses) == (0, 1)  # asked again, not read from the cache
