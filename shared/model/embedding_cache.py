"""Embeddings cached by (embedder id, sha256 of the preprocessed text).

`CachedEmbedder` wraps any embedder and embeds only the texts the cache lacks,
so re-training or re-classifying never pays for the same embedding twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import ARRAY, Select, String, any_, bindparam, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from shared.database.connection import Db, is_postgres, transaction, utcnow
from shared.database.tables import CachedEmbedding
from shared.errors import InvalidPostError
from shared.model.embedders.base import Embedder, EmbedOutcome
from shared.model.preprocess import text_digest

_LOOKUP_CHUNK = 500  # keys per IN (...) query: well under SQLite's variable limit


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


# Statements built once. On PostgreSQL the digests travel as one array, so the statement's text is
# the same for any number of them (parsed once, then prepared); SQLite expands IN (...) instead.
_CACHE = CachedEmbedding.__table__.c
_LOOKUP: dict[bool, Select[Any]] = {
    True: select(_CACHE.text_sha256, _CACHE.vector).where(
        _CACHE.embedder_id == bindparam("embedder_id"),
        _CACHE.text_sha256 == any_(bindparam("digests", type_=ARRAY(String)))),
    False: select(_CACHE.text_sha256, _CACHE.vector).where(
        _CACHE.embedder_id == bindparam("embedder_id"),
        _CACHE.text_sha256.in_(bindparam("digests", expanding=True))),
}
_STORE_POSTGRES = text(
    "INSERT INTO embedding_cache (embedder_id, text_sha256, vector, created_at) "
    "SELECT :embedder_id, u.digest, u.vector, :created_at "
    "FROM unnest(CAST(:digests AS varchar[]), CAST(:vectors AS bytea[])) AS u(digest, vector) "
    "ON CONFLICT DO NOTHING")
_STORE_SQLITE = sqlite_insert(CachedEmbedding).on_conflict_do_nothing()


def lookup(db: Db, embedder_id: str, digests: list[str]) -> dict[str, np.ndarray]:
    """Cached vectors by digest; an unreachable database is a DatabaseUnavailableError."""
    found: dict[str, np.ndarray] = {}
    unique = list(dict.fromkeys(digests))
    with transaction(db) as session:
        statement = _LOOKUP[is_postgres(session)]
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            for digest, blob in session.execute(statement, {"embedder_id": embedder_id, "digests": chunk}):
                found[digest] = np.frombuffer(blob, dtype="<f4")
    return found


def store(db: Db, embedder_id: str, vectors: dict[str, np.ndarray]) -> None:
    if not vectors:
        return
    blobs = [v.astype("<f4").tobytes() for v in vectors.values()]
    created = utcnow()
    with transaction(db) as session:
        if is_postgres(session):
            session.execute(_STORE_POSTGRES, {"embedder_id": embedder_id, "created_at": created,
                                              "digests": list(vectors), "vectors": blobs})
        else:
            session.execute(_STORE_SQLITE, [
                {"embedder_id": embedder_id, "text_sha256": d, "vector": b, "created_at": created}
                for d, b in zip(vectors, blobs, strict=True)])


class CachedEmbedder(Embedder):
    """`inner` behind the cache: a text embedded before is read from the database, not embedded again.

    Misses are embedded in chunks of `chunk_size` and stored chunk by chunk (an interrupted run keeps
    its work); with `store_now` False they are kept in `fresh` instead, for the caller to store
    (a worker stores them after its rows are written). `progress(n)` is told of every n texts done;
    `stats` counts hits and misses. Texts the service refuses on their own (`embed_each`) are neither
    stored nor fatal.
    """

    def __init__(self, inner: Embedder, db: Db, *, chunk_size: int = 256,
                 progress: Callable[[int], None] | None = None, store_now: bool = True) -> None:
        self.inner, self.db, self.chunk_size, self.progress = inner, db, chunk_size, progress
        self.id, self.dim = inner.id, inner.dim
        self.stats = CacheStats()
        self.store_now = store_now
        self.fresh: dict[str, np.ndarray] = {}  # digest -> vector embedded but not stored (store_now False)

    def embed(self, texts: list[str]) -> np.ndarray:
        outcome = self.embed_each(texts)
        if outcome.rejected:
            index, reason = next(iter(outcome.rejected.items()))
            raise InvalidPostError(f"the embedder refused text {index + 1} of {len(texts)}: {reason}")
        return outcome.vectors

    def embed_each(self, texts: list[str]) -> EmbedOutcome:
        digests = [text_digest(t) for t in texts]
        known = lookup(self.db, self.id, digests)
        missing = list({d: t for d, t in zip(digests, texts, strict=True) if d not in known}.items())
        hits = len(texts) - len(missing)  # a text repeated in the batch is embedded once
        self.stats.hits += hits
        self.stats.misses += len(missing)
        self._advance(hits)
        refused: dict[str, str] = {}
        for start in range(0, len(missing), self.chunk_size):
            chunk = missing[start : start + self.chunk_size]
            outcome = self.inner.embed_each([t for _, t in chunk])
            refused.update({chunk[j][0]: reason for j, reason in outcome.rejected.items()})
            fresh = {d: outcome.vectors[j] for j, (d, _) in enumerate(chunk) if j not in outcome.rejected}
            if self.store_now:
                store(self.db, self.id, fresh)
            else:
                self.fresh.update(fresh)
            known.update(fresh)
            self._advance(len(chunk))
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        rejected: dict[int, str] = {}
        for i, digest in enumerate(digests):
            if digest in refused:
                rejected[i] = refused[digest]
            else:
                vectors[i] = known[digest]
        return EmbedOutcome(vectors, rejected)

    def _advance(self, done: int) -> None:
        if self.progress and done:
            self.progress(done)

    def close(self) -> None:
        self.inner.close()
