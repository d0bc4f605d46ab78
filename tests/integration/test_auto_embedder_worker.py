"""A real `topicq worker` on EMBEDDER=auto follows a forced promotion to a version of another embedder:
without a restart, the next posts are embedded and classified by the new version and its embedder."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from shared.database.results import query_results
from shared.model.embedders.fake import FakeEmbedder
from shared.settings import Settings
from shared.wire.producer import Producer
from testkit.drills.services import free_port
from testkit.factories import labelled_posts
from testkit.scrape import scrape, total
from testkit.tables import post_rows, write_table
from testkit.waiting import wait_until
from testkit.worker_process import WorkerProcess, wait_for_rows, worker_env
from trainer.train import run_training

pytestmark = pytest.mark.integration

FIRST_EMBEDDER, SECOND_EMBEDDER = "fake:bow:64", "fake:bow:32"


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def env(postgres_url: str, redis_url: str, tmp_path: Path, port: int) -> dict[str, str]:
    return worker_env(postgres_url, redis_url, tmp_path, EMBEDDER="auto", MODEL_REFRESH_S="0.5",
                      HEARTBEAT_INTERVAL_S="0.5", METRICS_PORT=str(port))


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(env, tmp_path / "worker.log")
    yield process
    process.stop()


def send(settings: Settings, prefix: str) -> list[str]:
    producer = Producer(settings)
    try:
        for post_id, text, _ in labelled_posts(3, seed=7):
            producer.send(producer.validate(f"{prefix}-{post_id}", text, {}))
    finally:
        producer.close()
    return [f"{prefix}-{post_id}" for post_id, _, _ in labelled_posts(3, seed=7)]


def rows_of(settings: Settings, ids: list[str]) -> list[dict[str, object]]:
    return [r for r in query_results(settings.db_url, limit=None) if r["post_id"] in ids]


def test_a_worker_on_auto_serves_a_forced_promotion_of_another_embedder_without_restart(
        settings: Settings, worker: WorkerProcess, tmp_path: Path, port: int) -> None:
    table = write_table(tmp_path / "posts.csv", post_rows(per_topic=12))
    trained = {"dataset": str(table), "test_size": 0.25, "epochs": 20, "progress": False, "settings": settings}
    # Given a worker on EMBEDDER=auto serving version 1, trained with the 64-wide fake embedder
    first = run_training(embedder="fake", promote=True, **trained).version  # type: ignore[arg-type]
    worker.start()
    first_ids = send(settings, "one")
    assert wait_for_rows(settings.db_url, 9, timeout=60) == 9, worker.log()[-3000:]
    assert {(r["model_version"], r["embedder_id"], r["status"]) for r in rows_of(settings, first_ids)} == {
        (first, FIRST_EMBEDDER, "done")}

    # When version 2 is trained with the 32-wide one and promoted (it takes --force)
    second = run_training(embedder=FakeEmbedder(dim=32), **trained).version  # type: ignore[arg-type]
    refused = CliRunner().invoke(main, ["promote", "topics", str(second)])
    assert refused.exit_code == 2 and "workers on EMBEDDER=auto would switch" in refused.stderr
    forced = CliRunner().invoke(main, ["promote", "topics", str(second), "--force"])
    assert forced.exit_code == 0, forced.output
    time.sleep(1.0)  # past MODEL_REFRESH_S: the next batch looks at the alias again

    # Then the next posts are done by version 2, embedded with its embedder, by the same worker process
    second_ids = send(settings, "two")
    assert wait_for_rows(settings.db_url, 18, timeout=60) == 18, worker.log()[-3000:]
    rows = rows_of(settings, second_ids)
    assert {(r["model_version"], r["embedder_id"], r["status"]) for r in rows} == {
        (second, SECOND_EMBEDDER, "done")}, worker.log()[-3000:]
    assert sum(str(r["post_id"]).split("-")[1] == r["label"] for r in rows) >= 8
    assert worker.alive() and worker.starts == 1
    assert f"switching embedder {FIRST_EMBEDDER} -> {SECOND_EMBEDDER}" in worker.log()
    # and what names the embedder names the new one: the heartbeat and topicq_model_info
    wait_until(lambda: json.loads(settings.heartbeat_path.read_text())["embedder"] == SECOND_EMBEDDER, 10,
               "the heartbeat naming the new embedder")
    samples = scrape(port)
    [(labels, value)] = samples["topicq_model_info"]
    assert (labels["version"], labels["embedder"], value) == (str(second), SECOND_EMBEDDER, 1)
    assert total(samples, "topicq_embed_seconds_count", embedder=SECOND_EMBEDDER) >= 1
