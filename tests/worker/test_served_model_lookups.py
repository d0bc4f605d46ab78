"""How often serving asks the database: one alias lookup per look, one version read per load."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event

from shared.database.connection import get_engine
from shared.model.embedders.fake import FakeEmbedder
from shared.settings import Settings
from testkit.factories import register_fake_model
from worker.served_model import ServedModel
from worker.worker_state import build_worker_state


@contextmanager
def queries(db_url: str) -> Iterator[Counter[str]]:
    """Counts the SELECTs on the registry's tables while the block runs, by table."""
    seen: Counter[str] = Counter()

    def count(_conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            for table in ("model_aliases", "model_versions"):
                if f"FROM {table}" in statement:
                    seen[table] += 1

    engine = get_engine(db_url)
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_refresh_that_swaps_looks_up_the_alias_once_and_the_version_once(sqlite_url: str,
                                                                           tmp_path: Path) -> None:
    register_fake_model(sqlite_url, tmp_path / "models")
    server = ServedModel(sqlite_url, name="topics", alias="production", embedder=FakeEmbedder(), refresh_s=0)
    server.snapshot()
    second = register_fake_model(sqlite_url, tmp_path / "models", seed=1)

    with queries(sqlite_url) as seen:
        server.refresh()
    assert server.current().meta.version == second
    assert seen == {"model_aliases": 1, "model_versions": 1}

    with queries(sqlite_url) as seen:  # the alias did not move: a look, no load
        server.refresh()
    assert seen == {"model_aliases": 1}


def test_a_swap_to_another_embedder_reads_the_version_once(sqlite_url: str, tmp_path: Path) -> None:
    register_fake_model(sqlite_url, tmp_path / "models")
    server = ServedModel(sqlite_url, name="topics", alias="production", embedder=FakeEmbedder(), refresh_s=0,
                         embedder_for=lambda embedder_id, _directory: FakeEmbedder.for_id(embedder_id))
    server.snapshot()
    register_fake_model(sqlite_url, tmp_path / "models", seed=1, embedder=FakeEmbedder(dim=32))

    with queries(sqlite_url) as seen:
        server.refresh()
    assert server.embedder_id == "fake:bow:32"
    assert seen == {"model_aliases": 1, "model_versions": 1}


def test_a_starting_worker_on_auto_looks_up_the_alias_once(sqlite_url: str, tmp_path: Path) -> None:
    register_fake_model(sqlite_url, tmp_path / "models", embedder=FakeEmbedder(dim=32))
    settings = Settings(database_url=sqlite_url, model_dir=tmp_path / "models", embedder="auto",
                        redis_url="redis://127.0.0.1:1/0")

    with queries(sqlite_url) as seen:
        state = build_worker_state(settings)
        state.models.snapshot()
    assert state.models.embedder_id == "fake:bow:32"
    assert seen == {"model_aliases": 1, "model_versions": 1}
