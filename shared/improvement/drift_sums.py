"""Running sums per time bucket and model version, kept by workers for `topicq drift`.

One row per (model, version, bucket start, writer): how many posts, how many of
each label, the sum of top probabilities, and the sum and sum of squares of the
embeddings per dimension. A window's label distribution, mean confidence,
embedding centroid and spread follow from adding rows up, so no vector is
stored per post. Each worker process writes only its own rows (`writer`), so
the read-add-write of a batch never races another process.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import select

from shared.database.connection import Db, transaction, utcnow
from shared.database.tables import DriftSums


@dataclass
class BatchSums:
    """One batch's contribution: the done posts of one model version."""

    posts: int
    label_counts: dict[str, int]
    confidence_sum: float
    embedding_sum: np.ndarray
    embedding_sq_sum: np.ndarray
    review_count: int | None = None
    out_of_domain_count: int | None = None

    @classmethod
    def of(cls, labels: list[str], confidences: list[float], vectors: np.ndarray,
           review_count: int | None = None, out_of_domain_count: int | None = None) -> BatchSums:
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        vectors = np.asarray(vectors, dtype=np.float64)
        return cls(posts=len(labels), label_counts=counts, confidence_sum=float(sum(confidences)),
                   embedding_sum=vectors.sum(axis=0), embedding_sq_sum=(vectors ** 2).sum(axis=0),
                   review_count=review_count, out_of_domain_count=out_of_domain_count)


def bucket_start(at: datetime, bucket_s: int) -> datetime:
    seconds = int(at.timestamp()) // bucket_s * bucket_s
    return datetime.fromtimestamp(seconds, UTC)


def _add_vector(stored: list[float], new: np.ndarray) -> list[float]:
    return (np.asarray(stored, dtype=np.float64) + new).tolist() if stored else new.tolist()


def _add_optional(stored: int | None, new: int | None) -> int | None:
    return None if new is None else (stored or 0) + new


WRITER = f"{socket.gethostname()}:{os.getpid()}"
_lock = threading.Lock()  # one read-add-write at a time per process (a worker may run threads)


def add_sums(db: Db, *, model_name: str, model_version: int, sums: BatchSums, bucket_s: int,
             at: datetime | None = None, writer: str | None = None) -> None:
    """Add a batch to its bucket's row of this process (created when missing)."""
    if not sums.posts:
        return
    key = (model_name, model_version, bucket_start(at or utcnow(), bucket_s), writer or WRITER)
    with _lock, transaction(db) as session:
        row = session.get(DriftSums, key)
        if row is None:
            row = DriftSums(model_name=key[0], model_version=key[1], bucket_start=key[2], writer=key[3],
                            posts=0, label_counts={}, confidence_sum=0.0, embedding_sum=[],
                            embedding_sq_sum=[])
            session.add(row)
        row.posts += sums.posts
        counts = dict(row.label_counts or {})
        for label, count in sums.label_counts.items():
            counts[label] = int(counts.get(label, 0)) + count
        row.label_counts = counts
        row.confidence_sum += sums.confidence_sum
        row.embedding_sum = _add_vector(row.embedding_sum, sums.embedding_sum)
        row.embedding_sq_sum = _add_vector(row.embedding_sq_sum, sums.embedding_sq_sum)
        row.review_count = _add_optional(row.review_count, sums.review_count)
        row.out_of_domain_count = _add_optional(row.out_of_domain_count, sums.out_of_domain_count)


@dataclass
class WindowSums:
    """The buckets of one window added up (every writer)."""

    start: datetime
    posts: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    confidence_sum: float = 0.0
    embedding_sum: np.ndarray | None = None
    embedding_sq_sum: np.ndarray | None = None
    review_count: int | None = None
    out_of_domain_count: int | None = None


def window_sums(db: Db, *, model_name: str, model_version: int, since: datetime, window_s: int,
                until: datetime | None = None) -> list[WindowSums]:
    """The windows of `window_s` seconds from `since` that have posts, oldest first."""
    query = (select(DriftSums)
             .where(DriftSums.model_name == model_name, DriftSums.model_version == model_version,
                    DriftSums.bucket_start >= since)
             .order_by(DriftSums.bucket_start))
    if until is not None:
        query = query.where(DriftSums.bucket_start < until)
    windows: dict[int, WindowSums] = {}
    with transaction(db) as session:
        for row in session.scalars(query):
            index = int((row.bucket_start - since) // timedelta(seconds=window_s))
            window = windows.setdefault(index, WindowSums(start=since + timedelta(seconds=index * window_s)))
            window.posts += row.posts
            for label, count in (row.label_counts or {}).items():
                window.label_counts[label] = window.label_counts.get(label, 0) + int(count)
            window.confidence_sum += row.confidence_sum
            vector, squares = np.asarray(row.embedding_sum), np.asarray(row.embedding_sq_sum)
            window.embedding_sum = vector if window.embedding_sum is None else window.embedding_sum + vector
            window.embedding_sq_sum = (squares if window.embedding_sq_sum is None
                                       else window.embedding_sq_sum + squares)
            window.review_count = _add_optional(window.review_count, row.review_count)
            window.out_of_domain_count = _add_optional(window.out_of_domain_count, row.out_of_domain_count)
    return [windows[i] for i in sorted(windows)]
