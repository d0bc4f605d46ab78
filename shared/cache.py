"""Embeddings cached by (embedder id, sha256 of the preprocessed text).

`embed_cached` embeds only the texts the cache lacks, so re-training or
re-classifying never pays for the same embedding twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from shared.db import CachedEmbedding, Db, is_postgres, transaction
from shared.embedders.base import Embedder
from shared.preprocess import text_digest

_LOOKUP_CHUNK = 500  # keys per IN (...) query: well under SQLite's variable limit


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


def lookup(db: Db, embedder_id: str, digests: list[str]) -> dict[str, np.ndarray]:
    """Cached vectors by digest; an unreachable database is a DatabaseUnavailableError."""
    found: dict[str, np.ndarray] = {}
    unique = list(dict.fromkeys(digests))
    with transaction(db) as session:
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            rows = session.execute(
                select(CachedEmbedding.text_sha256, CachedEmbedding.vector).where(
                    CachedEmbedding.embedder_id == embedder_id,
                    CachedEmbedding.text_sha256.in_(chunk),
                )
            )
            for digest, blob in rows:
                found[digest] = np.frombuffer(blob, dtype="<f4")
    return found


def store(db: Db, embedder_id: str, vectors: dict[str, np.ndarray]) -> None:
    if not vectors:
        return
    rows = [
        {"embedder_id": embedder_id, "text_sha256": d, "vector": v.astype("<f4").tobytes()}
        for d, v in vectors.items()
    ]
    with transaction(db) as session:
        insert = pg_insert if is_postgres(session) else sqlite_insert
        session.execute(insert(CachedEmbedding).on_conflict_do_nothing(), rows)


def embed_cached(
    db_url: str,
    embedder: Embedder,
    texts: list[str],
    chunk_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, CacheStats]:
    """Vectors for already-preprocessed `texts`; misses are embedded in chunks and stored."""
    digests = [text_digest(t) for t in texts]
    cached = lookup(db_url, embedder.id, digests)
    missing = {d: t for d, t in zip(digests, texts, strict=True) if d not in cached}
    stats = CacheStats(hits=len(texts) - len(missing), misses=len(missing))
    if progress and stats.hits:
        progress(stats.hits)
    items = list(missing.items())
    for start in range(0, len(items), chunk_size):
        chunk = items[start : start + chunk_size]
        vectors = embedder.embed([t for _, t in chunk])
        fresh = {d: v for (d, _), v in zip(chunk, vectors, strict=True)}
        store(db_url, embedder.id, fresh)  # per chunk: an interrupted run keeps its work
        cached.update(fresh)
        if progress:
            progress(len(chunk))
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32), stats
    return np.stack([cached[d] for d in digests]).astype(np.float32), stats
