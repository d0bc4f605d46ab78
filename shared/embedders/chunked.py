"""all-MiniLM-L6-v2 over the whole post: 256-token windows embedded and mean-pooled.

The plain local embedder reads only a post's first 256 tokens; a long post's
topic is often argued further down. Here the post is cut into consecutive
windows of `max_tokens` (at most `max_windows` of them: preprocessing already
keeps 5,000 characters, about 1,200 tokens), every window is embedded in
the same batched call, and a post's vector is the mean of its windows',
L2-normalised. A post that fits one window gets exactly the plain vector.
Its id differs from the plain embedder's: the vectors are not interchangeable.
"""

from __future__ import annotations

import numpy as np

from shared.embedders.base import l2_normalise
from shared.embedders.local import DIM, MODEL_NAME, LocalEmbedder

CHUNKED_SUFFIX = "chunked"


class ChunkedLocalEmbedder(LocalEmbedder):
    def __init__(self, max_tokens: int = 256, batch_size: int = 64, max_windows: int = 8,
                 batch_tokens: int = 4096) -> None:
        super().__init__(max_tokens=max_tokens, batch_size=batch_size, batch_tokens=batch_tokens)
        self.max_windows = max_windows
        self.id = f"local:{MODEL_NAME}:{DIM}:{max_tokens}:{CHUNKED_SUFFIX}"

    def windows(self, text: str) -> list[str]:
        """`text` cut at token boundaries into pieces of at most max_tokens (with [CLS] and [SEP])."""
        tokenizer = self._load().tokenizer
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                            truncation=False, verbose=False)["offset_mapping"]
        step = self.max_tokens - 2
        if len(offsets) <= step:
            return [text]
        pieces = []
        for start in range(0, len(offsets), step):
            span = offsets[start: start + step]
            pieces.append(text[span[0][0]: span[-1][1]])
        return pieces[: self.max_windows]

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        pieces: list[str] = []
        owners: list[int] = []
        for index, text in enumerate(texts):
            for piece in self.windows(text):
                pieces.append(piece)
                owners.append(index)
        vectors = super().embed(pieces)
        pooled = np.zeros((len(texts), self.dim), dtype=np.float32)
        np.add.at(pooled, np.asarray(owners), vectors)
        return l2_normalise(pooled)
