"""The model registry: versions and aliases in the SQL database.

Functions take the database first, a URL (each call its own transaction) or
a session (the caller's transaction: e.g. register and promote a new version
together, or neither), and keyword-only arguments after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from shared.db import AliasChange, Db, ModelAlias, ModelVersion, transaction, utcnow
from shared.errors import ModelError
from shared.store import LoadedModel, load_model_dir

DEFAULT_ALIAS = "production"


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    path: str
    sha256: str
    embedder_id: str
    metrics: dict[str, Any]
    status: str
    created_at: datetime
    aliases: tuple[str, ...] = ()


def _info(row: ModelVersion, aliases: tuple[str, ...] = ()) -> VersionInfo:
    return VersionInfo(row.name, row.version, row.path, row.sha256, row.embedder_id,
                       dict(row.metrics or {}), row.status, row.created_at, aliases)


def next_version(db: Db, *, name: str) -> int:
    with transaction(db) as session:
        latest = session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name))
    return (latest or 0) + 1


def register(db: Db, *, name: str, version: int, path: Path, sha256: str,
             embedder_id: str, metrics: dict[str, Any]) -> VersionInfo:
    try:
        with transaction(db) as session:
            row = ModelVersion(name=name, version=version, path=str(path.resolve()), sha256=sha256,
                               embedder_id=embedder_id, metrics=metrics, status="registered")
            session.add(row)
            session.flush()
            return _info(row)
    except IntegrityError:
        raise ModelError(f"model {name}:{version} is already registered") from None


def list_versions(db: Db, *, name: str | None = None) -> list[VersionInfo]:
    with transaction(db) as session:
        query = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)
        if name:
            query = query.where(ModelVersion.name == name)
        aliases: dict[tuple[str, int], list[str]] = {}
        for alias in session.scalars(select(ModelAlias).order_by(ModelAlias.alias)):
            aliases.setdefault((alias.name, alias.version), []).append(alias.alias)
        return [_info(row, tuple(aliases.get((row.name, row.version), [])))
                for row in session.scalars(query)]


def get_version(db: Db, *, name: str, version: int) -> VersionInfo:
    with transaction(db) as session:
        row = session.get(ModelVersion, (name, version))
        if row is None:
            raise ModelError(f"model {name}:{version} is not registered (see `topicq models`)")
        return _info(row)


def resolve(db: Db, *, name: str, alias: str = DEFAULT_ALIAS) -> int | None:
    """The version `alias` points to, or None when it is unset."""
    with transaction(db) as session:
        row = session.get(ModelAlias, (name, alias))
        return row.version if row else None


def resolve_ref(db: Db, ref: str, *, alias: str = DEFAULT_ALIAS) -> VersionInfo:
    """NAME:VERSION, NAME:ALIAS or NAME (its `alias`, else its newest version)."""
    name, _, tail = ref.partition(":")
    if tail.isdigit():
        return get_version(db, name=name, version=int(tail))
    version = resolve(db, name=name, alias=tail or alias)
    if version is None and not tail:
        versions = list_versions(db, name=name)
        version = versions[-1].version if versions else None
    if version is None:
        raise ModelError(f"no model matches {ref!r} (see `topicq models`)")
    return get_version(db, name=name, version=version)


def embedder_change(db: Db, *, name: str, version: int, alias: str = DEFAULT_ALIAS) -> str | None:
    """Why workers serving `alias` could not switch to `version` (it needs another embedder), or None.

    A worker embeds with one embedder, the one its current version was trained with:
    a version of another embedder would be refused by every worker, which keeps the old one.
    """
    current = resolve(db, name=name, alias=alias)
    if current is None or current == version:
        return None
    wanted, serving = (get_version(db, name=name, version=v) for v in (version, current))
    if wanted.embedder_id == serving.embedder_id:
        return None
    return (f"{name}:{version} was trained with embedder {wanted.embedder_id!r}, but {alias} "
            f"{name}:{current} and so its workers embed with {serving.embedder_id!r}: they would keep "
            f"serving {name}:{current}")


def promote(db: Db, *, name: str, version: int, alias: str = DEFAULT_ALIAS) -> int | None:
    """Point `alias` at `version`; returns the version it pointed to before."""
    with transaction(db) as session:
        if session.get(ModelVersion, (name, version)) is None:
            raise ModelError(f"cannot promote {name}:{version}: not registered")
        row = session.get(ModelAlias, (name, alias))
        if row is None:
            session.add(ModelAlias(name=name, alias=alias, version=version, history={"past": []}))
            session.add(AliasChange(name=name, alias=alias, version=version, previous_version=None,
                                    action="promote"))
            return None
        previous = row.version
        if previous != version:
            row.history = {"past": [*row.history.get("past", []), previous]}
            row.version = version
            row.updated_at = utcnow()
            session.add(AliasChange(name=name, alias=alias, version=version, previous_version=previous,
                                    action="promote"))
        return previous


def rollback(db: Db, *, name: str, alias: str = DEFAULT_ALIAS) -> tuple[int, int]:
    """Move `alias` back to the version it pointed to before; returns (from, to)."""
    with transaction(db) as session:
        row = session.get(ModelAlias, (name, alias))
        past = list(row.history.get("past", [])) if row else []
        if row is None or not past:
            raise ModelError(f"nothing to roll back: {name} has no earlier {alias!r} version")
        current, target = row.version, past.pop()
        row.version = target
        row.history = {"past": past}
        row.updated_at = utcnow()
        session.add(AliasChange(name=name, alias=alias, version=target, previous_version=current,
                                action="rollback"))
        return current, target


@dataclass(frozen=True)
class AliasPeriod:
    """One stretch of time during which `alias` pointed at `version` (`until` None: it still does)."""

    alias: str
    version: int
    previous_version: int | None
    action: str
    since: datetime
    until: datetime | None


def alias_history(db: Db, *, name: str, alias: str | None = None) -> list[AliasPeriod]:
    """Which version held each alias of `name` when, oldest first."""
    query = select(AliasChange).where(AliasChange.name == name).order_by(AliasChange.changed_at,
                                                                          AliasChange.id)
    if alias is not None:
        query = query.where(AliasChange.alias == alias)
    with transaction(db) as session:
        changes = list(session.scalars(query))
    periods: list[AliasPeriod] = []
    for i, change in enumerate(changes):
        following = next((c for c in changes[i + 1:] if c.alias == change.alias), None)
        periods.append(AliasPeriod(change.alias, change.version, change.previous_version, change.action,
                                   change.changed_at, following.changed_at if following else None))
    return periods


def load(db: Db, *, name: str, version: int) -> LoadedModel:
    """Load a registered version, checking its checksum."""
    info = get_version(db, name=name, version=version)
    return load_model_dir(Path(info.path), info.sha256)
