"""Fake embedders that fail the way an embedding API does, for the retry paths."""

from __future__ import annotations

from shared.errors import TransientError
from shared.model.embedders.base import EmbedOutcome
from shared.model.embedders.fake import FakeEmbedder


class FlakyEmbedder(FakeEmbedder):
    """Fails its first `failures` calls with a transient error, like an API having a bad minute."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def embed_each(self, texts: list[str]) -> EmbedOutcome:
        if self.failures > 0:
            self.failures -= 1
            raise TransientError("503 UNAVAILABLE")
        return super().embed_each(texts)
