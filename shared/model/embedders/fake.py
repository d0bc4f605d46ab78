"""A deterministic embedder for tests: vectors from a hash of the text.

Texts sharing words get similar vectors (a hashed bag of words), so a
classifier can actually learn from them, yet no model is loaded.
"""

from __future__ import annotations

import hashlib
import re
import time

import numpy as np

from shared.model.embedders.base import Embedder, l2_normalise
from shared.model.embedders.embedder_id import EmbedderId, fake_id

_WORD = re.compile(r"\w+")


def hashed_bag_of_words(text: str, dim: int) -> np.ndarray:
    """A unit vector: each word adds +-1 at a position picked by its hash."""
    vector = np.zeros(dim, dtype=np.float32)
    words = _WORD.findall(text.lower()) or [text]
    for word in words:
        digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        position = int.from_bytes(digest[:4], "little") % dim
        vector[position] += 1.0 if digest[4] & 1 else -1.0
    if not vector.any():
        vector[0] = 1.0
    return l2_normalise(vector[None, :])[0]


class FakeEmbedder(Embedder):
    def __init__(self, dim: int = 64, delay_s: float = 0.0) -> None:
        self.dim = dim
        self.delay_s = delay_s
        self.id = fake_id(dim)
        self.calls: list[int] = []  # batch sizes seen, for tests and stats

    @classmethod
    def for_id(cls, embedder_id: str, delay_s: float = 0.0) -> FakeEmbedder:
        """The fake embedder whose id is `embedder_id` (`fake:bow:<dim>`); the default one otherwise."""
        parsed = EmbedderId.parse(embedder_id)
        if parsed is not None and (parsed.family, parsed.model) == ("fake", "bow") and parsed.dim > 0:
            return cls(dim=parsed.dim, delay_s=delay_s)
        return cls(delay_s=delay_s)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        if self.delay_s:
            time.sleep(self.delay_s)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([hashed_bag_of_words(text, self.dim) for text in texts])
