"""The follower thread re-reads the aliases; batches of a followed model server take what is loaded."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from shared.errors import DatabaseUnavailableError
from shared.model import registry
from shared.model.embedders.fake import FakeEmbedder
from testkit.factories import register_fake_model
from worker.alias_follower import AliasFollower
from worker.presence import WorkerPresence
from worker.served_model import ServedModel
from worker.shadow import ShadowScorer


def test_a_followed_server_switches_at_the_followers_look_not_at_a_batch(sqlite_url: str,
                                                                          tmp_path: Path) -> None:
    first = register_fake_model(sqlite_url, tmp_path / "models")
    reported: list[WorkerPresence] = []
    server = ServedModel(sqlite_url, name="topics", alias="production", embedder=FakeEmbedder(),
                         refresh_s=0, report=reported.append)
    server.followed = True
    assert server.snapshot().model.meta.version == first  # the first load is the batch's (or the start's)

    second = register_fake_model(sqlite_url, tmp_path / "models", seed=1)
    assert server.snapshot().model.meta.version == first  # a batch never looks: the follower does
    server.refresh()
    assert server.snapshot().model.meta.version == second
    assert reported[-1] == WorkerPresence(serving=f"topics:{second}", embedder="fake:bow:64")


def test_refresh_before_the_first_load_does_nothing(sqlite_url: str) -> None:
    server = ServedModel(sqlite_url, name="topics", alias="production", embedder=FakeEmbedder(), refresh_s=0)
    server.refresh()  # no version yet: the worker's start says so, not the follower


def test_a_followed_challenger_is_loaded_at_the_followers_look(sqlite_url: str, tmp_path: Path) -> None:
    register_fake_model(sqlite_url, tmp_path / "models")
    shadow = ShadowScorer(sqlite_url, name="topics", alias="staging", refresh_s=0)
    shadow.followed = True
    assert shadow.current() is None  # the first look (no challenger yet) may be a batch's
    challenger = register_fake_model(sqlite_url, tmp_path / "models", seed=1, promote=False)
    registry.promote(sqlite_url, name="topics", version=challenger, alias="staging")
    assert shadow.current() is None  # later ones are the follower's
    shadow.refresh()
    model = shadow.current()
    assert model is not None and model.meta.version == challenger


class Looks:
    """A look that fails `failures` times, then succeeds; `done` is set after `total` looks."""

    def __init__(self, failures: int, total: int) -> None:
        self.failures, self.total, self.count = failures, total, 0
        self.done = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        if self.count >= self.total:
            self.done.set()
        if self.count <= self.failures:
            raise DatabaseUnavailableError("cannot use the database at db:5432: connection refused")


def test_a_failing_look_is_logged_once_and_its_recovery_too(caplog: pytest.LogCaptureFixture) -> None:
    looks = Looks(failures=3, total=5)
    with caplog.at_level(logging.INFO, logger="worker.alias_follower"):
        follower = AliasFollower({"the 'production' alias": looks}, interval_s=0).start()
        try:
            assert looks.done.wait(timeout=30)
        finally:
            follower.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "worker.alias_follower"]
    assert messages == [
        "cannot re-read the 'production' alias, keeping what is loaded: cannot use the database at "
        "db:5432: connection refused",
        "re-reading the 'production' alias again",
    ]

