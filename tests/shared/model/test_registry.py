"""The model registry on SQLite and PostgreSQL: versions, aliases, promotion, rollback, loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.database.connection import Db, session_scope
from shared.errors import ModelError
from shared.model import registry
from shared.model.store import META_FILE
from testkit.factories import register_fake_model


def add(db_url: Db, version: int, name: str = "topics") -> registry.VersionInfo:
    return registry.register(db_url, name=name, version=version, path=Path(f"/models/{name}/{version}"),
                             sha256=f"{version:064d}", embedder_id="fake:bow:64",
                             metrics={"accuracy": version / 10})


def test_versions_count_up_per_name(db_url: str) -> None:
    assert registry.next_version(db_url, name="topics") == 1
    add(db_url, 1)
    add(db_url, 2)
    add(db_url, 1, name="other")
    assert registry.next_version(db_url, name="topics") == 3
    assert registry.next_version(db_url, name="other") == 2
    info = registry.get_version(db_url, name="topics", version=2)
    assert (info.path, info.metrics, info.status) == ("/models/topics/2", {"accuracy": 0.2}, "registered")
    assert [(v.name, v.version) for v in registry.list_versions(db_url)] == [
        ("other", 1), ("topics", 1), ("topics", 2)]


def test_a_version_registers_once(db_url: str) -> None:
    add(db_url, 1)
    with pytest.raises(ModelError, match="topics:1 is already registered"):
        add(db_url, 1)


def test_register_and_promote_in_one_transaction_leave_nothing_when_promote_fails(db_url: str) -> None:
    add(db_url, 1)
    registry.promote(db_url, name="topics", version=1)
    with pytest.raises(ModelError, match="topics:3"), session_scope(db_url) as session:
        add(session, 2)
        registry.promote(session, name="topics", version=3)  # not registered: the whole step fails
    assert [v.version for v in registry.list_versions(db_url, name="topics")] == [1]
    assert registry.resolve(db_url, name="topics") == 1


def test_register_and_promote_in_one_transaction(db_url: str) -> None:
    with session_scope(db_url) as session:
        add(session, 1)
        assert registry.promote(session, name="topics", version=1) is None
    assert registry.resolve(db_url, name="topics") == 1


def test_promote_and_rollback_walk_the_alias_history(db_url: str) -> None:
    for version in (1, 2, 3):
        add(db_url, version)

    assert registry.promote(db_url, name="topics", version=1) is None
    assert registry.promote(db_url, name="topics", version=2) == 1
    assert registry.promote(db_url, name="topics", version=2) == 2  # no-op keeps history
    assert registry.promote(db_url, name="topics", version=3) == 2
    assert registry.promote(db_url, name="topics", version=1, alias="staging") is None

    assert registry.resolve(db_url, name="topics") == 3
    aliases = {v.version: v.aliases for v in registry.list_versions(db_url, name="topics")}
    assert aliases == {1: ("staging",), 2: (), 3: ("production",)}

    assert registry.rollback(db_url, name="topics") == (3, 2)
    assert registry.rollback(db_url, name="topics") == (2, 1)
    assert registry.resolve(db_url, name="topics") == 1
    with pytest.raises(ModelError, match="nothing to roll back"):
        registry.rollback(db_url, name="topics")
    assert registry.resolve(db_url, name="topics", alias="staging") == 1

    # Every move is in the history, with the version it replaced and how long it held the alias.
    history = registry.alias_history(db_url, name="topics", alias="production")
    assert [(p.version, p.previous_version, p.action) for p in history] == [
        (1, None, "promote"), (2, 1, "promote"), (3, 2, "promote"), (2, 3, "rollback"), (1, 2, "rollback")]
    assert all(p.until == q.since for p, q in zip(history, history[1:], strict=False))
    assert history[-1].until is None
    assert [p.version for p in registry.alias_history(db_url, name="topics", alias="staging")] == [1]


def test_unknown_versions_and_aliases_are_model_errors(db_url: str) -> None:
    add(db_url, 1)
    with pytest.raises(ModelError, match="not registered"):
        registry.promote(db_url, name="topics", version=9)
    with pytest.raises(ModelError, match="nothing to roll back"):
        registry.rollback(db_url, name="topics", alias="staging")
    with pytest.raises(ModelError, match="topics:9 is not registered"):
        registry.get_version(db_url, name="topics", version=9)
    with pytest.raises(ModelError, match="no model matches 'absent'"):
        registry.resolve_ref(db_url, "absent")
    with pytest.raises(ModelError, match="no model matches 'topics:staging'"):
        registry.resolve_ref(db_url, "topics:staging")


def test_references_resolve_to_versions(db_url: str) -> None:
    for version in (1, 2, 3):
        add(db_url, version)
    assert registry.resolve_ref(db_url, "topics").version == 3  # no alias yet: the newest
    registry.promote(db_url, name="topics", version=2)
    registry.promote(db_url, name="topics", version=1, alias="staging")
    assert registry.resolve_ref(db_url, "topics").version == 2
    assert registry.resolve_ref(db_url, "topics:3").version == 3
    assert registry.resolve_ref(db_url, "topics:staging").version == 1
    assert registry.resolve_ref(db_url, "topics", alias="staging").version == 1


def test_load_checks_the_registered_checksum(db_url: str, tmp_path: Path) -> None:
    version = register_fake_model(db_url, tmp_path / "models")
    loaded = registry.load(db_url, name="topics", version=version)
    assert loaded.key == "topics:1" and list(loaded.classifier.classes_) == ["crypto", "medicine", "space"]

    meta = tmp_path / "models" / "topics" / "1" / META_FILE
    meta.write_text(meta.read_text().replace('"version": 1', '"version": 2'))
    with pytest.raises(ModelError, match="changed since registration"):
        registry.load(db_url, name="topics", version=version)


def test_the_history_migration_starts_from_the_aliases_already_set(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import text

    from shared.database.migrate import alembic_config, upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0001")
    with session_scope(url) as session:
        session.execute(text("INSERT INTO model_versions VALUES ('topics', 4, '/m', 'x', 'fake', '{}', "
                             "'registered', '2026-01-01 00:00:00')"))
        session.execute(text("INSERT INTO model_aliases VALUES ('topics', 'production', 4, '{\"past\": [3]}', "
                             "'2026-01-02 00:00:00')"))
    upgrade(url)
    [period] = registry.alias_history(url, name="topics")
    assert (period.alias, period.version, period.previous_version, period.action) == ("production", 4, None,
                                                                                      "recorded")
    assert period.since.isoformat().startswith("2026-01-02") and period.until is None
