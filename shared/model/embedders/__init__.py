"""Embedders: one interface (`Embedder`), one module per implementation.

`make_embedder(kind)` builds one from settings; `kind_for_id(id)` names the
kind that embeds like a model's recorded embedder id (a worker on EMBEDDER=auto
serves its model with it); `local-onnx-tuned` is a version's own fine-tuned
encoder, found in that version's directory (tuned.py), and a version of the
packaged encoder is served from the copy in its directory when it has one.
Third-party errors never escape this package (they become `shared.errors` types).
"""

from __future__ import annotations

from pathlib import Path

from shared.model.embedders.base import Embedder
from shared.model.embedders.embedder_id import LOCAL_DIM, LOCAL_MODEL, EmbedderId
from shared.settings import Settings, get_settings

KINDS = ("local-onnx", "local-onnx-fp32", "local", "gemini", "fake")


def make_embedder(kind: str | None = None, settings: Settings | None = None) -> Embedder:
    """Build the embedder named `kind` (one of KINDS), or the configured one."""
    settings = settings or get_settings()
    kind = kind or settings.resolved_embedder()
    if kind == "fake":
        from shared.model.embedders.fake import FakeEmbedder

        return FakeEmbedder(delay_s=settings.fake_embed_delay_s)
    if kind in ("local-onnx", "local-onnx-fp32"):
        from shared.model.embedders.onnx import OnnxEmbedder

        return OnnxEmbedder("fp32" if kind == "local-onnx-fp32" else "int8",
                            max_tokens=settings.local_model_max_tokens, threads=settings.encoder_threads,
                            directory=settings.encoder_dir)
    if kind == "local":
        from shared.model.embedders.local import LocalEmbedder

        return LocalEmbedder(max_tokens=settings.local_model_max_tokens,
                             batch_size=settings.local_batch_size, batch_tokens=settings.embed_batch_tokens)
    if kind == "gemini":
        from shared.model.embedders.gemini import GeminiEmbedder

        return GeminiEmbedder.from_settings(settings)
    from shared.errors import ConfigError

    raise ConfigError(f"unknown embedder {kind!r}: choose one of {', '.join(KINDS)}")


def kind_for_id(embedder_id: str) -> tuple[str, int | None] | None:
    """(kind, max tokens) of the embedder that produces `embedder_id`'s vectors; None if unknown.

    Local ids read `local:<model>:<dim>:<max tokens>[:<variant>[:tuned-<tag>]]`; the variant names the
    kind."""
    family = embedder_id.partition(":")[0]
    if family in ("fake", "gemini"):  # built from settings; one of another width or model is refused
        return family, None
    parsed = EmbedderId.parse(embedder_id)
    if parsed is None or (parsed.family, parsed.model, parsed.dim) != ("local", LOCAL_MODEL, LOCAL_DIM):
        return None
    if parsed.tuned is not None:
        return ("local-onnx-tuned", parsed.max_tokens) if parsed.variant == "onnx-int8" else None
    kind = {None: "local", "onnx-int8": "local-onnx", "onnx-fp32": "local-onnx-fp32"}.get(parsed.variant)
    return (kind, parsed.max_tokens) if kind else None


def make_embedder_for(embedder_id: str, settings: Settings, model_dir: Path | None = None) -> Embedder:
    """The embedder a model trained with `embedder_id` needs (ConfigError if none can be built);
    `model_dir`: the version's directory, where a tuned encoder lives."""
    from shared.errors import ConfigError

    found = kind_for_id(embedder_id)
    if found is None:
        raise ConfigError(f"no embedder here produces {embedder_id!r}: set EMBEDDER to one of "
                          f"{', '.join(KINDS)}, or serve a model trained with one")
    kind, max_tokens = found
    if kind == "fake":  # of the id's dimension: a model trained on fake:bow:32 reads 32 numbers
        from shared.model.embedders.fake import FakeEmbedder

        return FakeEmbedder.for_id(embedder_id, delay_s=settings.fake_embed_delay_s)
    if kind == "local-onnx-tuned":
        from shared.model.embedders.tuned import open_version_encoder

        if model_dir is None:
            raise ConfigError(f"embedder {embedder_id!r} is a version's own encoder: name the version")
        return open_version_encoder(model_dir, embedder_id, max_tokens=max_tokens or 256,
                                    threads=settings.encoder_threads)
    if kind in ("local-onnx", "local-onnx-fp32") and model_dir is not None:
        from shared.model.embedders.tuned import open_packaged_copy

        copy = open_packaged_copy(model_dir, "fp32" if kind == "local-onnx-fp32" else "int8",
                                  max_tokens=max_tokens or 256, threads=settings.encoder_threads)
        if copy is not None:
            return copy
    if max_tokens is not None:
        settings = settings.model_copy(update={"local_model_max_tokens": max_tokens})
    return make_embedder(kind, settings)


__all__ = ["KINDS", "Embedder", "EmbedderId", "kind_for_id", "make_embedder", "make_embedder_for"]
