"""The review loop with a real worker on the real Redis and PostgreSQL (fake embedder).

Given a promoted model and a worker, when on-topic and off-topic posts are
classified, then the off-topic ones are flagged for review and keep their
text; a review export -> import (all or nothing) -> `train --with-corrections`
round trip changes the training set by exactly the corrected posts; and the
promotion guards refuse and accept as set, with the alias history recorded.
"""

from __future__ import annotations

import csv
import io
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from cli.main import main
from shared.database.connection import session_scope
from shared.database.results import query_results
from shared.database.tables import Correction
from shared.model import registry
from shared.model.preprocess import preprocess
from shared.settings import Settings
from shared.wire.producer import Producer
from testkit.factories import labelled_posts, register_fake_model
from testkit.worker_process import WorkerProcess, wait_for_rows, worker_env
from trainer.training_digests import TRAINING_DIGESTS_FILE, text_digest

pytestmark = pytest.mark.integration

# Words of none of the model's topics (testkit.factories.TOPICS): posts the model was not trained for.
OFF_TOPIC = "football goal referee striker penalty league cup stadium coach season transfer".split()


def off_topic_posts(n: int) -> list[tuple[str, str]]:
    rng = random.Random(11)
    return [(f"off-{i}", "Subject: " + " ".join(rng.choice(OFF_TOPIC) for _ in range(12))) for i in range(n)]


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def env(postgres_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return worker_env(postgres_url, redis_url, tmp_path)


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


def start_worker(env: dict[str, str], workers: list[WorkerProcess], tmp_path: Path, **extra: str) -> None:
    worker = WorkerProcess({**env, **extra}, tmp_path / f"worker{len(workers)}.log")
    workers.append(worker)
    worker.start()


def send(settings: Settings, posts: list[tuple[str, str]]) -> None:
    producer = Producer(settings)
    for post_id, text in posts:
        producer.send(producer.validate(post_id, text))


def corrections_stored(db_url: str) -> int:
    with session_scope(db_url) as session:
        return int(session.scalar(select(func.count()).select_from(Correction)) or 0)


def test_off_topic_posts_are_flagged_and_corrections_round_trip_into_training(
    settings: Settings, env: dict[str, str], workers: list[WorkerProcess], tmp_path: Path
) -> None:
    register_fake_model(settings.db_url, settings.models_path)
    start_worker(env, workers, tmp_path)
    on_topic = [(post_id, text) for post_id, text, _ in labelled_posts(10, seed=21)]
    off_topic = off_topic_posts(30)
    send(settings, on_topic + off_topic)
    assert wait_for_rows(settings.db_url, 60, timeout=90, status="done") == 60

    # Then most off-topic posts are flagged, out of domain, with their text kept; few on-topic ones.
    rows = {row["post_id"]: row for row in query_results(settings.db_url, limit=None)}
    off_flagged = [rows[p] for p, _ in off_topic if rows[p]["needs_review"]]
    on_flagged = [rows[p] for p, _ in on_topic if rows[p]["needs_review"]]
    assert len(off_flagged) >= 27, [rows[p]["domain_score"] for p, _ in off_topic]
    assert all("out_of_domain" in row["review_reason"] for row in off_flagged)
    assert len(on_flagged) <= 6  # calibrated so that about 1 in 20 training posts lies out of domain
    flagged_ids = {post_id for post_id, row in rows.items() if row["needs_review"]}
    listed = topicq("results", "--needs-review", "--limit", "0", "--format", "jsonl").stdout
    assert {json.loads(line)["post_id"] for line in listed.splitlines()} == flagged_ids

    # The export lists the flagged posts, most uncertain first, with text and runner-up.
    exported = list(csv.DictReader(io.StringIO(topicq("review", "export", "--limit", "0").stdout)))
    assert {row["post_id"] for row in exported} == flagged_ids
    margins = [float(row["margin"]) for row in exported]
    assert margins == sorted(margins)
    texts = dict(off_topic + on_topic)
    assert all(row["text"] == texts[row["post_id"]] and row["runner_up"] for row in exported)

    # A file with an unknown id and an unknown label: one line each, nothing imported.
    reviewed = exported[:6]
    bad = tmp_path / "bad.csv"
    bad.write_text("post_id,label,reviewer\n" + "".join(f"{r['post_id']},space,ana\n" for r in reviewed)
                   + "no-such-post,space,ana\n" + f"{reviewed[0]['post_id']}x,sports,ana\n")
    refused = CliRunner().invoke(main, ["review", "import", str(bad)])
    assert refused.exit_code == 2
    lines = refused.stderr.strip().splitlines()
    assert lines[0] == f"{bad}: line 8: unknown post id 'no-such-post' (no result of model 'topics')"
    assert lines[1].startswith(f"{bad}: line 9: unknown post id")
    assert lines[2].startswith(f"{bad}: line 9: label 'sports' is not a class of topics")
    assert lines[3] == f"error: {bad}: 3 bad rows; nothing was imported"
    assert corrections_stored(settings.db_url) == 0

    # The exported file itself, its labels fixed for the reviewed rows, imports whole.
    good = tmp_path / "reviewed.csv"
    with good.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(exported[0]))
        writer.writeheader()
        writer.writerows({**row, "label": "space"} for row in reviewed)
    imported = topicq("review", "import", str(good), "--reviewer", "ana")
    assert imported.stdout == f"imported 6 corrections of topics from {good}\n"
    assert corrections_stored(settings.db_url) == 6
    remaining = topicq("review", "export", "--limit", "0").stdout
    assert not {r["post_id"] for r in reviewed} & {r["post_id"] for r in csv.DictReader(io.StringIO(remaining))}

    # Training with corrections differs from training without by exactly the corrected posts.
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id": i, "text": t, "label": label}) + "\n"
                             for i, t, label in labelled_posts(20, seed=4)))
    fast = ["--dataset", str(posts), "--embedder", "fake", "--hidden", "32", "--epochs", "5"]
    without = topicq("train", *fast)
    assert "trained topics version 2" in without.stdout
    trained = topicq("train", *fast, "--with-corrections")
    assert "trained topics version 3" in trained.stdout
    assert "corrections: 6 posts added, 0 relabelled, 0 left out" in trained.stdout

    def digests(version: int) -> set[str]:
        info = registry.get_version(settings.db_url, name="topics", version=version)
        return set((Path(info.path) / TRAINING_DIGESTS_FILE).read_text().split())

    corrected = {text_digest(preprocess(texts[r["post_id"]])) for r in reviewed}
    assert digests(3) - digests(2) == corrected and digests(2) <= digests(3)
    card = (Path(registry.get_version(settings.db_url, name="topics", version=3).path) / "MODEL_CARD.md")
    assert "- Corrections: 6 corrected posts joined the training posts" in card.read_text()


def test_promotion_guards_refuse_and_accept_as_set_and_the_history_shows_it(
    settings: Settings, env: dict[str, str], workers: list[WorkerProcess], tmp_path: Path
) -> None:
    # Given production v1 and a candidate v2, each having classified the same posts (a worker
    # serving the `candidate` alias, moved from v1 to v2).
    register_fake_model(settings.db_url, settings.models_path, seed=0)
    register_fake_model(settings.db_url, settings.models_path, seed=1, promote=False)
    registry.promote(settings.db_url, name="topics", version=1, alias="candidate")
    start_worker(env, workers, tmp_path, MODEL_ALIAS="candidate")
    posts = [(post_id, text) for post_id, text, _ in labelled_posts(8, seed=31)]
    send(settings, posts)
    assert wait_for_rows(settings.db_url, 24, timeout=90, model_version=1, status="done") == 24
    assert topicq("promote", "topics", "2", "--alias", "candidate").exit_code == 0
    time.sleep(2)  # the worker re-reads its alias every MODEL_REFRESH_S (0.5 s)
    send(settings, posts)
    assert wait_for_rows(settings.db_url, 24, timeout=90, model_version=2, status="done") == 24

    # Corrections: half agree with v2's label, half do not.
    v2 = {row["post_id"]: row["label"] for row in query_results(settings.db_url, model="topics:2", limit=None)}
    chosen = sorted(v2)[:4]
    other = {"space": "crypto", "crypto": "medicine", "medicine": "space"}
    corrections = tmp_path / "c.csv"
    corrections.write_text("post_id,label\n" + "".join(
        f"{p},{v2[p] if i % 2 == 0 else other[v2[p]]}\n" for i, p in enumerate(chosen)))
    assert topicq("review", "import", str(corrections)).exit_code == 0

    compared = json.loads(topicq("compare", "topics:1", "topics:2", "--format", "json").stdout)
    assert compared["common"] == 24 and compared["reviewed"]["b"] == {"n": 4, "correct": 2, "accuracy": 0.5,
                                                                                "trained_on": 0}
    assert sum(map(sum, compared["confusion"])) == 24
    png = tmp_path / "cmp.png"
    report = topicq("compare", "topics:1", "topics:2", "--png", str(png)).stdout
    assert "Posts classified by both: 24" in report and png.stat().st_size > 1000

    # Then a guard that fails refuses with one line, and nothing moves.
    refused = CliRunner().invoke(main, ["promote", "topics", "2", "--require-reviewed-accuracy", "0.6"])
    assert refused.exit_code == 2
    assert refused.stderr == ("error: not promoted: topics:2 is right on 2 of 4 corrected posts (0.500), "
                              "below the required 0.6\n")
    assert registry.resolve(settings.db_url, name="topics") == 1
    unseen = CliRunner().invoke(main, ["promote", "topics", "2", "--require-agreement", "0.5",
                                       "--since", "2999-01-01"])
    assert unseen.exit_code == 2 and unseen.stderr.startswith(
        "error: not promoted: no post was classified by both topics:1 and topics:2")
    assert registry.resolve(settings.db_url, name="topics") == 1
    agreement = compared["agreement"]
    accepted = topicq("promote", "topics", "2", "--require-agreement", f"{agreement:.3f}",
                      "--require-reviewed-accuracy", "0.5")
    assert accepted.stdout == "production: topics:1 -> topics:2\n"

    history = json.loads(topicq("models", "--history", "topics", "--format", "json").stdout)
    production = [(h["version"], h["previous_version"]) for h in history if h["alias"] == "production"]
    assert production[0] == (1, None) and production[-1] == (2, 1)
    assert [h["version"] for h in history if h["alias"] == "candidate"] == [1, 2]
    assert all(h["until"] for h in history[:-1] if h["alias"] == "production")
    table = topicq("models", "--history", "topics").stdout.splitlines()
    assert table[0].split() == ["ALIAS", "VERSION", "SINCE", "UNTIL", "ACTION", "FROM"]
