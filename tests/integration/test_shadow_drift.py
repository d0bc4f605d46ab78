"""A real worker follows a challenger in shadow and keeps the drift sums `topicq drift` reads.

Given production and staging versions (fake embedder) and a worker, when in-domain
posts and then off-domain posts flow through the queue, then the challenger has a
row for every post from the production batches' own embed calls, and `topicq
drift` finds no drift in the in-domain span (exit 0) and drift in the off-domain
one (exit 3).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli.main import main
from shared.database.connection import session_scope
from shared.database.results import stats
from shared.database.tables import Result
from shared.improvement.drift_sums import window_sums
from shared.model import registry
from shared.settings import Settings
from shared.wire.producer import Producer
from testkit.factories import make_posts, register_fake_model
from testkit.off_domain import off_domain_posts
from testkit.waiting import wait_until
from testkit.worker_process import WorkerProcess, wait_for_rows, worker_env

pytestmark = pytest.mark.integration


@pytest.fixture
def env(postgres_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return worker_env(postgres_url, redis_url, tmp_path, DRIFT_BUCKET_S="1")


def send(settings: Settings, posts: list[dict[str, object]]) -> None:
    producer = Producer(settings)
    for post in posts:
        producer.send(producer.validate(str(post["id"]), str(post["text"])))


def wait_for_sums(settings: Settings, version: int, since: datetime, posts: int) -> None:
    wait_until(lambda: sum(w.posts for w in window_sums(settings.db_url, model_name="topics", model_version=version,
                                                        since=since, window_s=86400)) >= posts,
               30, f"the drift sums of version {version} reaching {posts} posts", interval=0.3)


def batch_ids(db_url: str, version: int) -> list[str | None]:
    with session_scope(db_url) as session:
        return list(session.scalars(select(Result.batch_id).where(Result.model_version == version)))


def drift(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["drift", *args])
    return result.exit_code, result.output


def test_shadow_rows_for_every_post_and_drift_only_off_domain(
        settings: Settings, env: dict[str, str], tmp_path: Path) -> None:
    production = register_fake_model(settings.db_url, settings.models_path, seed=0)
    challenger = register_fake_model(settings.db_url, settings.models_path, seed=1, promote=False)
    registry.promote(settings.db_url, name="topics", version=challenger, alias="staging")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        # When 60 posts of the model's topics flow through the worker
        # Whole seconds: a 1 s bucket starts at one, and a window takes the buckets from its start.
        in_domain_from = datetime.now(UTC).replace(microsecond=0)
        send(settings, make_posts(60, "in", seed=9))
        assert wait_for_rows(settings.db_url, 120, timeout=60) == 120, worker.log()
        wait_for_sums(settings, production, in_domain_from, 60)
        wait_for_sums(settings, challenger, in_domain_from, 60)

        # Then the challenger has a done row for each, made from the production batches' embed calls
        production_batches, challenger_batches = (batch_ids(settings.db_url, v) for v in (production, challenger))
        assert len(challenger_batches) == 60 and set(challenger_batches) == set(production_batches)
        embed_calls = len(set(production_batches))
        assert embed_calls < 60  # batched: one call per batch, none added by the challenger
        assert stats(settings.db_url)["by_model"] == {f"topics:{production}": 60}
        assert stats(settings.db_url, shadow=True)["by_status"] == {"done": 120}

        # and drift finds nothing in the in-domain span, for either version
        time.sleep(1.1)  # the off-domain posts start in a later bucket
        off_domain_from = datetime.now(UTC).replace(microsecond=0)
        span = ["--since", in_domain_from.isoformat(), "--until", off_domain_from.isoformat()]
        code, output = drift(*span)
        assert code == 0 and "no drift in 1 windows" in output, output
        code, output = drift(*span, "--model", "topics:staging")
        assert code == 0, output

        # When 60 off-domain posts follow
        send(settings, off_domain_posts(60, "off", seed=3))
        assert wait_for_rows(settings.db_url, 240, timeout=60) == 240, worker.log()
        wait_for_sums(settings, production, off_domain_from, 60)

        # Then drift reports them, with exit status 3 and plots
        code, output = drift("--since", off_domain_from.isoformat(), "--format", "json",
                             "--plots", str(tmp_path / "plots"))
        assert code == 3, output
        report = json.loads(output[: output.rindex("}") + 1])
        [window] = report["windows"]
        assert report["drift"] and window["posts"] == 60
        assert {"labels", "centroid"} <= set(window["crossed"])
        assert (tmp_path / "plots" / "drift_centroid_shift.png").stat().st_size > 0
    finally:
        worker.kill()
