"""A real worker process embedding with Gemini, against the fake Gemini API.

Given a fake Gemini server started here, a model trained on its vectors and a
`topicq worker` with EMBEDDER=gemini pointed at the fake, when posts are sent
through the queue, then every post gets a `done` row — also when half the
calls are refused with 429 (and nothing is sent before the retryDelay); the
API key appears in no log line, result row or Redis message; a wrong key
stops the worker at start; a key revoked mid-run loses no post.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from shared.database.connection import session_scope
from shared.database.tables import Result
from shared.model.embedders.gemini import GeminiEmbedder
from shared.settings import Settings
from shared.wire.producer import Producer
from testkit.factories import labelled_posts, register_fake_model
from testkit.fake_gemini import FakeGemini, running_fake_gemini
from testkit.worker_process import WorkerProcess, count_rows, wait_for_rows, worker_env

pytestmark = pytest.mark.integration

# Shaped like a real key, and unique enough that finding it anywhere is a leak.
KEY = "AIzaSyTQ-topicq-test-key-0123456789abcdXYZ"
EMBEDDER_ID = "gemini:gemini-embedding-001:768:CLASSIFICATION"


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with running_fake_gemini(api_key=KEY, latency_ms=20, retry_delay_s=1.0) as server:
        yield server


@pytest.fixture
def env(postgres_url: str, redis_url: str, fake: FakeGemini, tmp_path: Path) -> dict[str, str]:
    return worker_env(postgres_url, redis_url, tmp_path, EMBEDDER="gemini", GEMINI_API_KEY=KEY,
                      GEMINI_BASE_URL=fake.base_url, GEMINI_TIMEOUT_S="5", GEMINI_RPM="100000",
                      GEMINI_RETRIES="1", VISIBILITY_TIMEOUT_S="20")


@pytest.fixture
def model_version(settings: Settings, fake: FakeGemini) -> int:
    """A model trained on the fake Gemini's vectors, registered for the gemini embedder id."""
    gemini = GeminiEmbedder(KEY, base_url=fake.base_url, retries=0, timeout_s=5)
    try:
        version = register_fake_model(settings.db_url, settings.models_path, embedder=gemini)
    finally:
        gemini.close()
    fake.calls.clear()  # the training calls are not the worker's
    return version


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


def start_worker(env: dict[str, str], workers: list[WorkerProcess], tmp_path: Path,
                 concurrency: int = 2, **extra: str) -> WorkerProcess:
    worker = WorkerProcess({**env, **extra}, tmp_path / f"worker{len(workers)}.log", concurrency)
    workers.append(worker)
    return worker.start()


def send_posts(settings: Settings, posts: list[tuple[str, str, str]]) -> None:
    producer = Producer(settings)
    try:
        for post_id, text, label in posts:
            producer.send(producer.validate(post_id, text, {"truth": label}))
    finally:
        producer.close()


def redis_contents(client: redis.Redis) -> list[bytes]:
    """Every key and value in the Redis database, message bodies base64-decoded."""
    contents = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"hash":
            values = [k + b" " + v for k, v in client.hgetall(key).items()]
        elif kind == b"zset":
            values = client.zrange(key, 0, -1)
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"string":
            values = [client.get(key) or b""]
        else:
            values = []
        contents.append(key)
        for value in values:
            contents.append(value)
            # Celery's Redis transport keeps each message body base64-encoded in its envelope.
            contents += [base64.b64decode(body) for body in _BODY.findall(value)]
    return contents


_BODY = re.compile(rb'"body": ?"([A-Za-z0-9+/=]+)"')


def errors_of(db_url: str) -> list[str]:
    with session_scope(db_url) as session:
        return [e for e in session.scalars(select(Result.error)) if e]


def statuses(db_url: str) -> dict[str, str]:
    with session_scope(db_url) as session:
        return dict(session.execute(select(Result.post_id, Result.status)).all())


def test_posts_through_the_queue_get_done_rows_and_the_key_never_leaks(
    settings: Settings, model_version: int, env: dict[str, str], fake: FakeGemini,
    workers: list[WorkerProcess], tmp_path: Path,
) -> None:
    # Given a worker embedding with Gemini, and calls slow enough to keep posts in flight
    fake.switches.latency_ms = 150
    worker = start_worker(env, workers, tmp_path)
    assert f"with {EMBEDDER_ID}" in worker.log()
    posts = labelled_posts(40, seed=21)  # 120 posts
    client = redis.Redis.from_url(settings.redis_url)
    # When posts are sent, and Redis is scanned while they are queued and unacknowledged
    send_posts(settings, posts)
    scans, leaks, bodies_seen = 0, 0, 0
    while count_rows(settings.db_url) < len(posts) and scans < 200:
        contents = redis_contents(client)
        leaks += sum(KEY.encode() in c for c in contents)
        bodies_seen += sum(posts[-1][0].encode() in c for c in contents)
        scans += 1
        time.sleep(0.05)
    # Then every post has a done row, embedded by Gemini in batches
    assert wait_for_rows(settings.db_url, len(posts), timeout=45) == len(posts)
    assert count_rows(settings.db_url, status="done", embedder_id=EMBEDDER_ID) == len(posts)
    ok_calls = [c for c in fake.calls if c.outcome == "ok"]
    assert sum(c.n_texts for c in ok_calls) >= len(posts) and len(ok_calls) < len(posts) / 4
    with session_scope(settings.db_url) as session:
        truth = dict(session.execute(select(Result.post_id, Result.label)).all())
    accuracy = sum(truth[pid] == label for pid, _, label in posts) / len(posts)
    assert accuracy > 0.9  # the fake's vectors carry the topic, like Gemini's
    # And the key was in none of the Redis messages, rows or log lines
    assert bodies_seen > 0 and leaks == 0  # the scan did see the messages, and no key in them
    assert KEY not in worker.log()
    assert not [e for e in errors_of(settings.db_url) if KEY in e]
    client.close()


def test_half_the_calls_429_every_post_completes_and_retry_delay_is_honoured(
    settings: Settings, model_version: int, env: dict[str, str], fake: FakeGemini,
    workers: list[WorkerProcess], tmp_path: Path,
) -> None:
    # Given a fake that refuses half the calls with 429 RetryInfo retryDelay 1s
    fake.switches.rate_429 = 0.5
    fake.switches.retry_delay_s = 1.0
    worker = start_worker(env, workers, tmp_path)
    posts = labelled_posts(32, seed=22)  # 96 posts, 6+ batches
    # When the posts are sent
    send_posts(settings, posts)
    # Then every post completes
    assert wait_for_rows(settings.db_url, len(posts), timeout=50, status="done") == len(posts)
    calls = sorted(fake.calls, key=lambda c: c.start)
    refused = [c for c in calls if c.outcome == "429"]
    assert refused and any(c.outcome == "ok" for c in calls)
    # And no call reached the service within the retryDelay of a 429, bar those already on
    # their way when it went out (the other thread's call; the fake's own lag widens the window)
    in_flight = 0.05 + max(c.end - c.replied for c in calls)
    gaps = [later.start - c.replied for c in refused for later in calls if later.start > c.replied]
    too_soon = [g for g in gaps if in_flight <= g < (refused[0].retry_delay_s or 0)]
    assert too_soon == [], f"calls {too_soon} s after a 429; outcomes {fake.outcomes()}"
    assert any(g >= 1.0 for g in gaps)
    assert KEY not in worker.log()


def test_a_wrong_key_stops_the_worker_at_start_with_a_clear_error(
    settings: Settings, model_version: int, env: dict[str, str], fake: FakeGemini,
    workers: list[WorkerProcess], tmp_path: Path,
) -> None:
    wrong = "AIzaSyWRONG-topicq-test-key-99999999999"
    with pytest.raises(RuntimeError, match="worker exited 2") as caught:
        start_worker(env, workers, tmp_path, GEMINI_API_KEY=wrong)
    log = str(caught.value)
    assert "error: Gemini 400 INVALID_ARGUMENT: Gemini refused the API key (API_KEY_INVALID)" in log
    assert "check GEMINI_API_KEY" in log and "ready." not in log
    assert wrong not in log and KEY not in log and "Traceback" not in log
    assert [c.outcome for c in fake.calls] == ["400"]  # one probe, then nothing


def test_a_key_revoked_mid_run_loses_no_post(
    settings: Settings, model_version: int, env: dict[str, str], fake: FakeGemini,
    workers: list[WorkerProcess], tmp_path: Path,
) -> None:
    # Given a worker that has classified a first lot of posts
    worker = start_worker(env, workers, tmp_path, MAX_RETRIES="2")
    first, second = labelled_posts(8, seed=23), labelled_posts(4, seed=24)
    send_posts(settings, first)
    assert wait_for_rows(settings.db_url, len(first), timeout=30) == len(first)
    # When the key is revoked and more posts arrive
    fake.switches.api_key = "a-new-key-the-worker-does-not-have"
    send_posts(settings, second)
    # Then they are not lost: after MAX_RETRIES they are `failed`, with a reason naming the setting
    total = len(first) + len(second)
    assert wait_for_rows(settings.db_url, len(second), timeout=30, status="failed") == len(second)
    found = statuses(settings.db_url)
    assert {pid for pid, _, _ in second} == {pid for pid, s in found.items() if s == "failed"}
    errors = errors_of(settings.db_url)
    assert len(errors) == len(second)
    assert all("refused the API key" in e and "check GEMINI_API_KEY" in e for e in errors)
    assert "the embedder refuses this worker's configuration" in worker.log()
    assert "Traceback" not in worker.log()
    # And once the key works again, `topicq retry-failed` brings them to `done`
    fake.switches.api_key = KEY
    from click.testing import CliRunner

    from cli.queueing import retry_failed

    result = CliRunner().invoke(retry_failed, [])
    assert result.exit_code == 0, result.output
    assert wait_for_rows(settings.db_url, total, timeout=30, status="done") == total
    assert KEY not in worker.log() and not [e for e in errors_of(settings.db_url) if KEY in e]



def test_backfill_through_the_gemini_batch_api_writes_rows_like_a_worker(
    settings: Settings, model_version: int, fake: FakeGemini, tmp_path: Path,
) -> None:
    import json

    from click.testing import CliRunner

    from cli.queueing import backfill
    from shared.settings import get_settings

    get_settings.cache_clear()
    # Given posts in a file, one of them nothing but an e-mail address once preprocessed
    posts = labelled_posts(10, seed=25)
    lines = [{"id": pid, "text": text, "metadata": {"truth": label}} for pid, text, label in posts]
    lines.append({"id": "only-an-address", "text": "From: someone@example.com"})
    source = tmp_path / "posts.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines))
    fake.switches.batch_seconds = 2.0  # long enough that a loaded machine still polls a job before it ends
    # When they are backfilled with Gemini batch jobs, 20 posts a chunk
    args = [str(source), "--gemini-batch-api", "--poll-s", "0.1", "--chunk", "20"]
    result = CliRunner().invoke(backfill, args)
    # Then every post has its row, written like a worker's, and no synchronous call was made
    assert result.exit_code == 0, result.output
    assert "31 posts: classified 31 with Gemini batch jobs in 2 jobs" in result.output
    assert count_rows(settings.db_url, status="done", embedder_id=EMBEDDER_ID) == len(posts)
    with session_scope(settings.db_url) as session:
        labels = dict(session.execute(select(Result.post_id, Result.label)).all())
        [refused] = session.scalars(select(Result.error).where(Result.status == "rejected"))
    assert sum(labels[pid] == label for pid, _, label in posts) >= 0.9 * len(posts)
    assert "embedder refused the text: Gemini refused the text" in refused and "empty" in refused
    assert fake.outcomes().get("batch-create") == 2 and "ok" not in fake.outcomes()
    assert all(job.polls >= 2 for job in fake.batches.jobs.values())  # pending, running, succeeded
    # And a second run skips the done posts; a job that expires is an error, and writes nothing
    fake.switches.batch_final_state = "BATCH_STATE_EXPIRED"
    again = CliRunner().invoke(backfill, args)
    assert again.exit_code != 0 and "ended JOB_STATE_EXPIRED" in str(again.exception)
    assert count_rows(settings.db_url) == len(posts) + 1
    assert KEY not in result.output + again.output + str(again.exception)
