"""A version's own encoder: all-MiniLM-L6-v2 fine-tuned on its training posts (`topicq train --finetune`),
or the copy of the packaged encoder the trainer saves in every version of it.

The tuned weights are exported and quantised like the packaged encoder and kept
inside the version directory as ENCODER_FILE, the tokenizer beside it as
TOKENIZER_FILE (both part of the version's checksum; versions saved before
TOKENIZER_FILE read the packaged tokenizer, the same one).
Its embedder id is the int8 id plus `:tuned-<sha256 of the file, 16 hex>`, so
the id names exactly one encoder file: its vectors never mix with another's in
the embedding cache, and a worker on EMBEDDER=auto opens the file of the
version it serves, after checking that the file is the one the id names.
"""

from __future__ import annotations

from pathlib import Path

from shared.errors import ModelError
from shared.model.embedders.encoder_files import ENCODER_FILE, TOKENIZER_FILE, sha256_of
from shared.model.embedders.onnx import OnnxEmbedder


def file_tag(path: Path) -> str:
    """The first 16 hex digits of the file's sha256: the tag its embedder id carries."""
    return sha256_of(path).hexdigest()[:16]


def tuned_embedder(path: Path, *, max_tokens: int, threads: int = 0,
                   tokenizer: Path | None = None) -> OnnxEmbedder:
    """The embedder of a tuned int8 encoder file, its id tagged with the file's checksum."""
    return OnnxEmbedder("int8", max_tokens=max_tokens, threads=threads, path=path, tuned=file_tag(path),
                        tokenizer=tokenizer)


def version_tokenizer(model_dir: Path) -> Path | None:
    """The version's own tokenizer.json; None for versions saved before it (the packaged one then)."""
    path = model_dir / TOKENIZER_FILE
    return path if path.is_file() else None


def open_version_encoder(model_dir: Path, embedder_id: str, *, max_tokens: int,
                         threads: int = 0) -> OnnxEmbedder:
    """The tuned encoder inside `model_dir` that produces `embedder_id`; ModelError when it is
    missing or is another file than the one the id names."""
    path = model_dir / ENCODER_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing: embedder {embedder_id!r} is that version's own encoder")
    embedder = tuned_embedder(path, max_tokens=max_tokens, threads=threads,
                              tokenizer=version_tokenizer(model_dir))
    if embedder.id != embedder_id:
        raise ModelError(f"{path} is not the encoder {embedder_id!r} names (its id is {embedder.id!r}); "
                         "refusing to embed with it")
    return embedder


def open_packaged_copy(model_dir: Path, quantization: str, *, max_tokens: int,
                       threads: int = 0) -> OnnxEmbedder | None:
    """The packaged encoder as the version keeps it (the copy the trainer saved beside the model, which
    the version's checksum covers); None when the version has no copy (saved before it did)."""
    path = model_dir / ENCODER_FILE
    if not path.is_file():
        return None
    return OnnxEmbedder(quantization, max_tokens=max_tokens, threads=threads, path=path,
                        tokenizer=version_tokenizer(model_dir))
