"""Resuming a backfill sends only posts neither done nor still queued; `--wait-only` sends nothing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from cli.main import main
from shared.database.results import DONE, ResultRow, write_rows
from shared.model import registry
from shared.redis_keys import UNACKED as UNACKED_KEY
from shared.redis_keys import delayed_key, inflight_key, priority_key
from shared.wire.producer import Producer
from testkit.worker_process import worker_env

pytestmark = pytest.mark.integration


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def write_posts(path: Path, count: int) -> str:
    path.write_text("".join(json.dumps({"id": f"p{n}", "text": f"post number {n} about space"}) + "\n"
                            for n in range(count)))
    return str(path)


def ids_of(raw: bytes) -> list[str]:
    _, kwargs, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
    return [post["id"] for post in kwargs["posts"]]


@pytest.fixture
def queue(sqlite_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    registry.register(sqlite_url, name="topics", version=1, path=tmp_path, sha256="0" * 64,
                      embedder_id="fake:bow:64", metrics={})
    registry.promote(sqlite_url, name="topics", version=1)
    env = worker_env(sqlite_url, redis_url, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env["QUEUE"]  # its keys, and the `unacked` hash, go with the redis_url fixture's db


def interrupt_after(monkeypatch: pytest.MonkeyPatch, chunks: int) -> None:
    send_chunk, sent = Producer.send_chunk, []

    def ctrl_c(self: Producer, posts: list) -> str:
        if len(sent) == chunks:
            raise KeyboardInterrupt
        sent.append(posts)
        return send_chunk(self, posts)

    monkeypatch.setattr(Producer, "send_chunk", ctrl_c)


def test_a_rerun_after_ctrl_c_sends_only_what_is_neither_done_nor_queued(
    queue: str, redis_url: str, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    posts = write_posts(tmp_path / "p.jsonl", 14)
    with monkeypatch.context() as patch:
        interrupt_after(patch, 5)  # p0..p9 sent, two by two
        assert topicq("backfill", posts, "--chunk", "2").exit_code == 130
    client = redis.Redis.from_url(redis_url)
    # The five chunks wait in each place a message can be: the list, a priority list, in flight,
    # held unacknowledged, parked in the delayed set. p0, p1 (the oldest) are done meanwhile.
    oldest, *rest = [client.rpop(queue) for _ in range(5)]
    assert ids_of(oldest) == ["p0", "p1"]
    write_rows(sqlite_url, [ResultRow(post_id=p, model_name="topics", model_version=1, status=DONE,
                                      label="space") for p in ("p0", "p1")])
    client.lpush(priority_key(queue, 3), rest[0])
    client.lpush(inflight_key(queue), rest[1])
    message = json.loads(rest[2])
    client.hset(UNACKED_KEY, "t-held", json.dumps([message, "", queue]))
    other = {**message, "body": base64.b64encode(json.dumps(
        [[], {"posts": [{"id": "p12", "text": "held for another queue"}]}, {}]).encode()).decode()}
    client.hset(UNACKED_KEY, "t-other", json.dumps([other, "", "another-queue"]))
    client.zadd(delayed_key(queue), {rest[3]: 2e9})
    monkeypatch.setattr("shared.wire.queued_posts.PAGE", 1)  # pages of one: every page is read
    result = topicq("backfill", posts, "--chunk", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "14 posts: sent 4 in 2 chunks, 2 already done for topics:1, 8 still queued, 0 refused as invalid")
    sent = [post for raw in client.lrange(queue, 0, -1) for post in ids_of(raw)]
    assert sorted(sent) == ["p10", "p11", "p12", "p13"]


def test_wait_only_sends_nothing_and_waits_for_the_rows_of_the_files_posts(
    queue: str, redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    posts = write_posts(tmp_path / "p.jsonl", 4)
    write_rows(sqlite_url, [ResultRow(post_id=f"p{n}", model_name="topics", model_version=1, status=DONE,
                                      label="space") for n in range(3)])
    waiting = topicq("backfill", posts, "--wait-only", "--timeout", "0")
    assert waiting.exit_code == 1, waiting.output
    assert "rows for 3 of 4 posts: 3 done, 0 rejected, 0 failed; 1 have no row yet" in waiting.stderr
    assert redis.Redis.from_url(redis_url).llen(queue) == 0
    write_rows(sqlite_url, [ResultRow(post_id="p3", model_name="topics", model_version=1, status=DONE,
                                      label="space")])
    done = topicq("backfill", posts, "--wait-only")
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[-1] == "rows for 4 of 4 posts: 4 done, 0 rejected, 0 failed"


def test_a_refused_post_is_named_by_id_and_line(queue: str, tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "text": "fine text"}\n\n{"id": "b", "text": ""}\n')
    result = topicq("backfill", str(path), "--dry-run")
    assert "refused: post 'b' (line 3): invalid post: text: is empty" in result.output, result.output
