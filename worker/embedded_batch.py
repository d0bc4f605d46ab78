"""One batch after its one embed call: what the followers of a batch reuse instead of embedding again."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.database.results import ResultRow
from shared.model.store import TopicModel


@dataclass
class EmbeddedBatch:
    texts: list[str]  # preprocessed, as the model read them
    vectors: np.ndarray  # one row per text (a refused text's row means nothing)
    refused: dict[int, str]  # index -> why the embedder refused the text
    model: TopicModel  # the version served
    embedder_id: str  # what embedded the batch: the served version's embedder
    rows: list[ResultRow]  # its rows, in the order of the texts
    posts_text: list[str]  # the posts' texts as sent, which a row flagged for review keeps

    def done(self) -> list[int]:
        return [i for i in range(len(self.texts)) if i not in self.refused]
