"""The embedder interface every implementation follows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


class Embedder(ABC):
    """Turns texts into float32, L2-normalised rows.

    `id` names provider, model, dimension and task: vectors of two embedders
    with different ids are not comparable, so models and cache entries are
    keyed by it.
    """

    id: str
    dim: int

    @abstractmethod
    def embed(self, texts: list[str]) -> np.ndarray:
        """One row per text, in order; shape (len(texts), dim), float32, unit norm."""

    def embed_each(self, texts: list[str]) -> EmbedOutcome:
        """Like `embed`, but a text the service refuses on its own does not sink the batch.

        Implementations whose service can refuse single texts override this.
        """
        return EmbedOutcome(self.embed(texts))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and threads."""


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


@dataclass
class EmbedOutcome:
    """Vectors for a batch where some texts may be refused on their own.

    `rejected` maps a text's index to the reason the service refused it
    (e.g. Gemini's 400 for one text); its row in `vectors` is zeros. The
    rest of the batch is usable.
    """

    vectors: np.ndarray
    rejected: dict[int, str] = field(default_factory=dict)
