"""The model registry: versions and aliases in the SQL database.

Functions take the database first, a URL (each call its own transaction) or
a session (the caller's transaction: e.g. register and promote a new version
together, or neither), and keyword-only arguments after it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from shared.database.connection import Db, session_scope, transaction, utcnow
from shared.database.tables import AliasChange, ModelAlias, ModelVersion
from shared.errors import ModelError
from shared.model.store import TopicModel, read_meta
from shared.settings import model_name_problem

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
    """Why `version` needs another embedder than `alias`'s current version, or None.

    Workers on EMBEDDER=auto switch embedder with the version; workers with a set
    EMBEDDER refuse it and keep the old version; a challenger in shadow is scored only
    on batches of its own embedder.
    """
    current = resolve(db, name=name, alias=alias)
    if current is None or current == version:
        return None
    wanted, serving = (get_version(db, name=name, version=v) for v in (version, current))
    if wanted.embedder_id == serving.embedder_id:
        return None
    return (f"{name}:{version} was trained with embedder {wanted.embedder_id!r}, but {alias} "
            f"{name}:{current} with {serving.embedder_id!r}")


@dataclass(frozen=True)
class LabelChange:
    """How `version`'s labels differ from those of `alias`'s current version."""

    current: int
    added: tuple[str, ...]
    removed: tuple[str, ...]
    shared: int  # labels both know: 0 means no earlier post's review fits the new version

    def describe(self) -> str:
        return f"added: {', '.join(self.added) or '-'}; removed: {', '.join(self.removed) or '-'}"


def label_change(db: Db, *, name: str, version: int, alias: str = DEFAULT_ALIAS) -> LabelChange | None:
    """The labels `version` adds and drops against `alias`'s current version, or None when they
    are the same (or the alias is unset). Corrections name labels: a review of an earlier post
    whose label the new version does not know is refused."""
    current = resolve(db, name=name, alias=alias)
    if current is None or current == version:
        return None
    wanted, serving = (set(read_meta(Path(get_version(db, name=name, version=v).path)).labels)
                       for v in (version, current))
    if wanted == serving:
        return None
    return LabelChange(current, tuple(sorted(wanted - serving)), tuple(sorted(serving - wanted)),
                       len(wanted & serving))


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


def load(db: Db, *, name: str, version: int) -> TopicModel:
    """Load a registered version, checking its checksum."""
    return load_version(get_version(db, name=name, version=version))


def load_version(info: VersionInfo) -> TopicModel:
    """Load the version `info` was read from, checking its checksum."""
    return TopicModel.load(Path(info.path), info.sha256)


def check_model_name(name: str) -> str:
    """`name`, when it can name a model (its versions are saved under MODEL_DIR/<name>/)."""
    problem = model_name_problem(name)
    if problem:
        raise ModelError(f"model name {name!r} cannot be used: it {problem}")
    return name


def _model_root(models_path: Path, name: str) -> Path:
    """MODEL_DIR/<name>, refused should it be anywhere but directly under MODEL_DIR (lexically: an
    operator may make a model's folder a symlink)."""
    root = Path(os.path.normpath(models_path / check_model_name(name)))
    if root.parent != Path(os.path.normpath(models_path)):
        raise ModelError(f"model name {name!r} cannot be used: its directory {root} is outside {models_path}")
    return root


def _claim_directory(root: Path, version: int) -> tuple[int, Path]:
    """Create root/<version>, moving up while a concurrent run (or a crashed one) holds it."""
    while True:
        try:
            (root / str(version)).mkdir(parents=True)
            return version, root / str(version)
        except FileExistsError:
            version += 1


def publish_version(db_url: str, models_path: Path, model: TopicModel, *,
                    metrics: dict[str, Any] | None = None, promote_to: str | None = None,
                    beside: Callable[[Path], object] | None = None) -> tuple[int, Path]:
    """Give `model` the next version number of its name, save it under models_path/<name>/<version>,
    register it (and point `promote_to` at it) in one transaction. `beside(directory)` writes what
    goes with the version but not into its checksum (model card, plots). On any failure the
    directory is removed: a version is published whole or not at all."""
    name = model.meta.name
    version, directory = _claim_directory(_model_root(models_path, name), next_version(db_url, name=name))
    try:
        model.meta.version = version
        sha256 = model.save(directory)
        if beside is not None:
            beside(directory)
        with session_scope(db_url) as session:
            register(session, name=name, version=version, path=directory, sha256=sha256,
                     embedder_id=model.meta.embedder_id, metrics=metrics or {})
            if promote_to:
                promote(session, name=name, version=version, alias=promote_to)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)  # ours, never registered
        raise
    return version, directory
