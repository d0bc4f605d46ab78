"""`QUEUE=gq topicq backfill`: the model is the one the queue's workers serve, not MODEL_NAME's default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from shared.model import registry
from testkit.factories import labelled_posts, register_fake_model
from testkit.worker_process import WorkerProcess, worker_env
from worker.presence import Presence, WorkerPresence

pytestmark = pytest.mark.integration


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def write_posts(path: Path, count: int) -> str:
    posts = labelled_posts(count // 3 + 1, seed=7)[:count]
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t, _ in posts))
    return str(path)


def shell(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The sender's shell: the workers' QUEUE, but MODEL_NAME left at its default."""
    for key, value in env.items():
        if key != "MODEL_NAME":
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("MODEL_NAME", raising=False)


def test_backfill_to_another_models_queue_waits_for_and_skips_that_models_rows(
    postgres_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = worker_env(postgres_url, redis_url, tmp_path, MODEL_NAME="gq")
    register_fake_model(postgres_url, Path(env["MODEL_DIR"]), name="gq")
    registry.register(postgres_url, name="topics", version=1, path=tmp_path, sha256="0" * 64,
                      embedder_id="fake:bow:64", metrics={})  # MODEL_NAME's model exists too
    registry.promote(postgres_url, name="topics", version=1)
    shell(env, monkeypatch)
    posts = write_posts(tmp_path / "p.jsonl", 30)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        first = topicq("backfill", posts, "--wait", "--timeout", "30")
        again = topicq("backfill", posts)
    finally:
        worker.stop()
    assert first.exit_code == 0, first.output + worker.log()
    assert first.stdout.splitlines()[-1] == "rows for 30 of 30 sent posts: 30 done, 0 rejected, 0 failed"
    assert again.stdout.startswith("30 posts: sent 0 in 0 chunks, 30 already done for gq:1"), again.output


@pytest.fixture
def queue(sqlite_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    env = worker_env(sqlite_url, redis_url, tmp_path)
    for name in ("topics", "gq"):
        registry.register(sqlite_url, name=name, version=1, path=tmp_path, sha256="0" * 64,
                          embedder_id="fake:bow:64", metrics={})
        registry.promote(sqlite_url, name=name, version=1)
    shell(env, monkeypatch)
    return env["QUEUE"]


def serving(redis_url: str, queue: str, model: str, worker: str) -> Presence:
    presence = Presence(redis_url, queue, worker=worker)
    presence.record(WorkerPresence(serving=model))
    return presence


def test_workers_of_two_models_on_one_queue_are_refused_in_one_line(
    queue: str, redis_url: str, tmp_path: Path
) -> None:
    reporters = [serving(redis_url, queue, "gq:1", "w1"), serving(redis_url, queue, "topics:1", "w2")]
    try:
        result = topicq("backfill", write_posts(tmp_path / "p.jsonl", 3))
    finally:
        for reporter in reporters:
            reporter.clear()
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert "MODEL_NAME" in result.stderr and f"QUEUE={queue}" in result.stderr and "gq and topics" in result.stderr


def test_model_option_names_the_queues_model_and_is_refused_when_its_workers_serve_another(
    queue: str, redis_url: str, tmp_path: Path
) -> None:
    posts = write_posts(tmp_path / "p.jsonl", 3)
    named = topicq("backfill", posts, "--model", "gq")
    assert named.exit_code == 0, named.output
    assert named.stdout.startswith("3 posts: sent 3 in 1 chunks, 0 already done for gq:1")
    reporter = serving(redis_url, queue, "topics:1", "w1")
    try:
        refused = topicq("backfill", posts, "--model", "gq")
    finally:
        reporter.clear()
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.count("\n") == 1
    assert f"--model says 'gq' but the workers of QUEUE={queue} serve 'topics'" in refused.stderr


def test_a_queue_no_worker_has_reported_on_is_backfilled_for_model_name_with_a_warning(
    queue: str, tmp_path: Path
) -> None:
    result = topicq("backfill", write_posts(tmp_path / "p.jsonl", 3))
    assert result.exit_code == 0, result.output
    assert (f"warning: no worker of QUEUE={queue} has said which model it serves: backfilling "
            "MODEL_NAME=topics; if the queue is another model's, say it with --model NAME") in result.stderr
    assert result.stdout.startswith("3 posts: sent 3 in 1 chunks, 0 already done for topics:1")
