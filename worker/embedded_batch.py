"""One batch after its one embed call: what the followers of a batch reuse instead of embedding again."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from shared.database.results import ResultRow
from shared.model.embedding_cache import store
from shared.model.store import TopicModel

log = logging.getLogger(__name__)


@dataclass
class EmbeddedBatch:
    texts: list[str]  # preprocessed, as the embedder read them
    vectors: np.ndarray  # one row per text (a refused text's row means nothing)
    refused: dict[int, str]  # index -> why the embedder refused the text
    model: TopicModel  # the version served
    embedder_id: str  # what embedded the batch: the served version's embedder
    rows: list[ResultRow]  # its rows, in the order of the texts
    posts_text: list[str]  # the posts' texts as sent: what a words branch reads, and a flagged row keeps
    # Vectors embedded for this batch that the embedding cache lacks (digest -> vector), stored once
    # the rows are written, in `cache_url`.
    fresh: dict[str, np.ndarray] = field(default_factory=dict)
    cache_url: str | None = None

    def done(self) -> list[int]:
        return [i for i in range(len(self.texts)) if i not in self.refused]

    def store_fresh(self) -> None:
        """Store the new vectors in the embedding cache; a failure costs the cache, never the batch."""
        if not self.fresh or not self.cache_url:
            return
        try:
            store(self.cache_url, self.embedder_id, self.fresh)
        except Exception as exc:  # noqa: BLE001 - the rows are written; a vector not cached is embedded again
            log.warning("could not store %d embeddings in the embedding cache: %s", len(self.fresh), exc)
