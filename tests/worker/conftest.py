"""The worker room's fixtures: an embedded Celery worker in the test process.

In-memory broker (kombu's `memory://`), fake embedder, SQLite; no Redis. `settings` here is the
in-process worker's, replacing the top conftest's (which reads a module's `env` for worker processes).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from shared.database.connection import get_engine
from shared.database.migrate import upgrade
from shared.model.embedders.fake import FakeEmbedder
from shared.settings import Settings
from shared.wire.celery_config import celery_config
from testkit.factories import register_fake_model
from worker import worker_state
from worker.tasks import register_tasks


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A SQLite database with a registered model, and its model store: trained once per module."""
    folder = tmp_path_factory.mktemp("trained")
    database, models = folder / "topicq.db", folder / "models"
    url = f"sqlite:///{database}"
    upgrade(url)
    register_fake_model(url, models)
    get_engine(url).dispose()  # closing the last connection folds the WAL into the file tests copy
    return database, models


@pytest.fixture
def settings(trained: tuple[Path, Path], tmp_path: Path) -> Settings:
    database, models = trained
    shutil.copy(database, tmp_path / "topicq.db")  # the registry points into `models`, shared read-only
    # A queue of its own: the memory transport's queues outlive a test's worker.
    return Settings(database_url=f"sqlite:///{tmp_path / 'topicq.db'}", model_dir=models, embedder="fake",
                    redis_url="memory://", queue=f"in-process-{uuid.uuid4().hex[:8]}", batch_size=4,
                    batch_wait_s=0.1, max_retries=3, retry_base_s=0.05, retry_max_s=0.2, model_refresh_s=0)


@pytest.fixture
def run_worker(settings: Settings, monkeypatch: pytest.MonkeyPatch
               ) -> Iterator[Callable[[FakeEmbedder], Celery]]:
    """Start an embedded worker whose runtime embeds with the given embedder; returns its app."""
    with ExitStack() as workers:
        def run(embedder: FakeEmbedder) -> Celery:
            app = Celery("topicq-test", set_as_current=False)
            app.conf.update(celery_config(settings))
            register_tasks(app, settings)
            monkeypatch.setattr(worker_state, "_state", worker_state.build_worker_state(settings, embedder))
            workers.enter_context(start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10))
            return app

        yield run
