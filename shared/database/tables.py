"""Every table of topicq's database, in one module: what Alembic compares the migrations with.

- model_versions, model_aliases, alias_changes: the model registry and each alias's history
  (shared/model/registry.py).
- embedding_cache: vectors keyed by (embedder id, sha256 of preprocessed text)
  (shared/model/embedding_cache.py).
- results: one row per (post_id, model_name, model_version) (shared/database/results.py).
- corrections: labels given by reviewers (shared/improvement/corrections.py).
- drift_sums: running sums per time bucket and writer (shared/improvement/drift_sums.py).
The queries live beside their subject, in the modules named; the schema is created
by Alembic (shared/database/migrate.py), never on import. Documented for plain-SQL
users in the README.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.database.connection import utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back with its zone, on SQLite too (which keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(UTC) if value is not None and value.tzinfo is not None else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class ModelVersion(Base):
    __tablename__ = "model_versions"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    embedder_id: Mapped[str] = mapped_column(String(200))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="registered")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAlias(Base):
    __tablename__ = "model_aliases"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    alias: Mapped[str] = mapped_column(String(50), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    # Versions the alias pointed to before, newest last: what `rollback` returns to.
    history: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    __table_args__ = (
        ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"]),
    )


class AliasChange(Base):
    """One move of an alias: `topicq models --history` shows which version held it when."""

    __tablename__ = "alias_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    alias: Mapped[str] = mapped_column(String(50))
    version: Mapped[int] = mapped_column(Integer)
    previous_version: Mapped[int | None] = mapped_column(Integer)  # None: the alias was unset (or unknown)
    action: Mapped[str] = mapped_column(String(20))  # promote, rollback, recorded (before history was kept)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ix_alias_changes_name", "name", "alias", "changed_at"),)


class CachedEmbedding(Base):
    __tablename__ = "embedding_cache"
    embedder_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    text_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Result(Base):
    __tablename__ = "results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    post_id: Mapped[str] = mapped_column(String(200))
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))  # a Status
    label: Mapped[str | None] = mapped_column(String(200))
    score: Mapped[float | None] = mapped_column(Float)
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    embedder_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    # One id per embed call: posts per call = count(*) / count(distinct batch_id).
    batch_id: Mapped[str | None] = mapped_column(String(32))
    post_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    # Kept for `failed` rows (retry-failed) and, as KEEP_TEXT says, for rows that need review.
    text: Mapped[str | None] = mapped_column(Text)
    # The review flag (shared/improvement/review.py), set when the row is written.
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    review_reason: Mapped[str | None] = mapped_column(String(60))  # comma-separated reasons
    margin: Mapped[float | None] = mapped_column(Float)  # top probability minus the runner-up's
    domain_score: Mapped[float | None] = mapped_column(Float)  # > 1: out of domain (model/out_of_domain.py)
    received_at: Mapped[datetime | None] = mapped_column()
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Written by a challenger version scored in shadow (SHADOW_ALIAS), not by the one served.
    shadow: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    __table_args__ = (
        UniqueConstraint("post_id", "model_name", "model_version", name="uq_results_post_model"),
        Index("ix_results_label", "label"),
        Index("ix_results_status", "status"),
        Index("ix_results_processed_at", "processed_at"),
        Index("ix_results_needs_review", "needs_review", "model_name"),
    )


class Correction(Base):
    __tablename__ = "corrections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    post_id: Mapped[str] = mapped_column(String(200))
    model_name: Mapped[str] = mapped_column(String(100))  # the model whose classes the label is one of
    label: Mapped[str] = mapped_column(String(200))
    reviewer: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str | None] = mapped_column(Text)  # None: no text was kept; cannot be trained on
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("post_id", "model_name", name="uq_corrections_post_model"),)


class DriftSums(Base):
    __tablename__ = "drift_sums"
    model_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(primary_key=True)
    writer: Mapped[str] = mapped_column(String(200), primary_key=True)  # host:pid of the worker
    posts: Mapped[int] = mapped_column(Integer, default=0)
    label_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    confidence_sum: Mapped[float] = mapped_column(Float, default=0.0)
    embedding_sum: Mapped[list[float]] = mapped_column(JSON, default=list)
    embedding_sq_sum: Mapped[list[float]] = mapped_column(JSON, default=list)
    # From the rows' review flags and domain scores (shared/improvement/review.py); None: not measured.
    review_count: Mapped[int | None] = mapped_column(Integer)
    out_of_domain_count: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
