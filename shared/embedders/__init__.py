"""Embedders: one interface (`Embedder`), one module per implementation.

`make_embedder(kind)` builds one from settings; third-party errors never
escape this package (they become `shared.errors` types).
"""

from __future__ import annotations

from shared.embedders.base import Embedder
from shared.settings import Settings, get_settings


def make_embedder(kind: str | None = None, settings: Settings | None = None) -> Embedder:
    """Build the embedder named `kind` (local | gemini | fake), or the configured one."""
    settings = settings or get_settings()
    kind = kind or settings.resolved_embedder()
    if kind == "fake":
        from shared.embedders.fake import FakeEmbedder

        return FakeEmbedder(delay_s=settings.fake_embed_delay_s)
    if kind == "local":
        from shared.embedders.local import LocalEmbedder

        return LocalEmbedder(max_tokens=settings.local_model_max_tokens,
                             batch_size=settings.local_batch_size)
    if kind == "gemini":
        from shared.embedders.gemini import GeminiEmbedder

        return GeminiEmbedder.from_settings(settings)
    from shared.errors import ConfigError

    raise ConfigError(f"unknown embedder {kind!r}: choose local, gemini or fake")


__all__ = ["Embedder", "make_embedder"]
