"""`topicq backfill --wait` until the sent posts have rows, and what Ctrl-C says."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from cli.wait_for_rows import wait_for_rows
from shared.database.results import DONE, FAILED, ResultRow, write_rows
from shared.model import registry
from shared.settings import Settings
from shared.wire.producer import Producer
from testkit.factories import labelled_posts, register_fake_model
from testkit.worker_process import WorkerProcess, worker_env

pytestmark = pytest.mark.integration


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def write_posts(path: Path, count: int) -> str:
    posts = labelled_posts(count // 3 + 1, seed=5)[:count]
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t, _ in posts))
    return str(path)


@pytest.fixture
def env(sqlite_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A production version (never loaded: no worker runs) and a queue of the test's own."""
    registry.register(sqlite_url, name="topics", version=1, path=tmp_path, sha256="0" * 64,
                      embedder_id="fake:bow:64", metrics={})
    registry.promote(sqlite_url, name="topics", version=1)
    env = worker_env(sqlite_url, redis_url, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_rows_written_before_the_wait_began_do_not_count(sqlite_url: str) -> None:
    since = datetime.now(UTC)
    write_rows(sqlite_url, [
        ResultRow(post_id="old", model_name="topics", model_version=0, status=FAILED,
                  processed_at=since - timedelta(minutes=1)),
        ResultRow(post_id="done", model_name="topics", model_version=1, status=DONE),
        ResultRow(post_id="failed", model_name="topics", model_version=0, status=FAILED),
        ResultRow(post_id="failed", model_name="other", model_version=1, status=DONE),
    ])
    report = wait_for_rows(sqlite_url, model_name="topics", post_ids=["old", "done", "failed"], since=since,
                           timeout_s=0)
    assert (report.counts, report.pending, report.ok) == ({"done": 1, "rejected": 0, "failed": 1}, 1, False)
    assert report.summary() == "rows for 2 of 3 sent posts: 1 done, 0 rejected, 1 failed"


def test_wait_times_out_with_exit_1_when_no_worker_writes_rows(env: dict[str, str], tmp_path: Path) -> None:
    started = time.monotonic()
    result = topicq("backfill", write_posts(tmp_path / "p.jsonl", 5), "--wait", "--timeout", "1")
    assert time.monotonic() - started < 10
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("5 posts: sent 5 in 1 chunks")
    assert "timed out after 1 s: rows for 0 of 5 sent posts: 0 done, 0 rejected, 0 failed; 5 have no row yet" \
        in result.stderr


def test_ctrl_c_while_sending_says_how_many_were_sent_and_that_a_rerun_resumes(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    send_chunk = Producer.send_chunk
    sent = []

    def ctrl_c_at_the_third_chunk(self: Producer, posts: list) -> str:
        if len(sent) == 2:
            raise KeyboardInterrupt
        sent.append(posts)
        return send_chunk(self, posts)

    monkeypatch.setattr(Producer, "send_chunk", ctrl_c_at_the_third_chunk)
    result = topicq("backfill", write_posts(tmp_path / "p.jsonl", 10), "--chunk", "3")
    assert result.exit_code == 130
    assert "interrupted: sent 6 of 10 posts in 2 chunks; run the same command again to resume" in result.stderr
    assert "Aborted!" not in result.output


def test_ctrl_c_while_waiting_says_every_post_was_sent(env: dict[str, str], tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "backfill", write_posts(tmp_path / "p.jsonl", 4), "--wait"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().startswith("4 posts: sent 4")  # sending is over: now it waits
    time.sleep(0.5)  # into the wait for rows: the interruption must come while it waits, not as it starts
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "interrupted while waiting: every post was sent, and the workers go on with them" in stderr


def test_wait_ends_when_a_worker_has_classified_every_post(
    postgres_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = worker_env(postgres_url, redis_url, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    register_fake_model(settings.db_url, settings.models_path)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        result = topicq("backfill", write_posts(tmp_path / "p.jsonl", 40), "--wait", "--timeout", "120")
    finally:
        worker.stop()
    assert result.exit_code == 0, result.output + worker.log()
    assert result.stdout.splitlines()[-1] == "rows for 40 of 40 sent posts: 40 done, 0 rejected, 0 failed"
