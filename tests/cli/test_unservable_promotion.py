"""A version the workers cannot serve: `promote` refuses it, and a worker that keeps an older one says so."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from shared.model import registry
from shared.model.embedders.fake import FakeEmbedder
from testkit.factories import register_fake_model
from worker.presence import Presence
from worker.served_model import ServedModel


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def register(db_url: str, version: int, embedder_id: str, tmp_path: Path) -> None:
    registry.register(db_url, name="topics", version=version, path=tmp_path, sha256="0" * 64,
                      embedder_id=embedder_id, metrics={})


@pytest.fixture
def local_then_fake(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """topics:1 (local embedder) in production, topics:2 trained with the fake embedder."""
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    register(sqlite_url, 1, "local:all-MiniLM-L6-v2:384:256", tmp_path)
    register(sqlite_url, 2, "fake:bow:64", tmp_path)
    registry.promote(sqlite_url, name="topics", version=1)
    return sqlite_url


def test_promote_refuses_a_version_of_another_embedder(local_then_fake: str) -> None:
    result = topicq("promote", "topics", "2")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "'fake:bow:64'" in result.stderr and "'local:all-MiniLM-L6-v2:384:256'" in result.stderr
    assert "--force" in result.stderr
    # and says which workers would follow it: those on EMBEDDER=auto, not those with a set EMBEDDER
    assert "workers on EMBEDDER=auto would switch to it" in result.stderr
    assert "workers with a set EMBEDDER would refuse it and keep topics:1" in result.stderr
    assert registry.resolve(local_then_fake, name="topics") == 1


def test_promote_force_moves_the_alias_anyway(local_then_fake: str) -> None:
    result = topicq("promote", "topics", "2", "--force")
    assert result.stdout == "production: topics:1 -> topics:2\n"
    assert registry.resolve(local_then_fake, name="topics") == 2


def test_promote_of_the_same_embedder_needs_no_force(local_then_fake: str, tmp_path: Path) -> None:
    register(local_then_fake, 3, "local:all-MiniLM-L6-v2:384:256", tmp_path)
    assert topicq("promote", "topics", "3").stdout == "production: topics:1 -> topics:3\n"


@pytest.mark.integration
def test_a_worker_keeping_an_older_version_logs_an_error_and_models_and_stats_show_why(
    sqlite_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    served = register_fake_model(sqlite_url, tmp_path / "models")
    unservable = register_fake_model(sqlite_url, tmp_path / "models", promote=False, embedder=FakeEmbedder(dim=32))
    server = ServedModel(sqlite_url, name="topics", alias="production", embedder=FakeEmbedder(),
                         refresh_s=0, report=Presence(redis_url, "topicq", worker="w1").record)
    assert server.current().meta.version == served

    registry.promote(sqlite_url, name="topics", version=unservable)
    with caplog.at_level(logging.ERROR, logger="worker.served_model"):
        assert server.current().meta.version == served
        assert server.current().meta.version == served
    [logged] = [r for r in caplog.records if r.levelno == logging.ERROR]  # once, not at every look
    assert f"cannot switch to topics:{unservable}" in logged.getMessage()
    assert "fake:bow:32" in logged.getMessage()

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    expected = f"worker w1 (queue 'topicq') serves topics:{served} and refuses topics:{unservable} since "
    for verb in ("models", "stats"):
        output = topicq(verb).stdout
        assert expected in output and "fake:bow:32" in output.split(expected)[1], output

    registry.rollback(sqlite_url, name="topics")
    server.current()
    assert "refuses" not in topicq("models").stdout
