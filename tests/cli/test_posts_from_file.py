"""`topicq enqueue` and `backfill` reading files and datasets: what is refused, what is counted."""

from __future__ import annotations

import base64
import json
import math
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from shared.model import registry


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def write_jsonl(path: Path, posts: list[dict]) -> str:
    path.write_text("".join(json.dumps(post) + "\n" for post in posts))
    return str(path)


@pytest.fixture
def promoted_model(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A production version on SQLite, which the CLI's settings point at; dry runs never load it."""
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    registry.register(sqlite_url, name="topics", version=1, path=tmp_path / "models", sha256="0" * 64,
                      embedder_id="fake:bow:64", metrics={})
    registry.promote(sqlite_url, name="topics", version=1)
    return sqlite_url


DUPLICATED = [{"id": "a", "text": "first a"}, {"id": "b", "text": "only b"},
              {"id": "a", "text": "second a"}, {"id": 7, "text": "first 7"}, {"id": "7", "text": "second 7"}]


@pytest.mark.parametrize("verb", [["enqueue"], ["backfill", "--dry-run"]])
def test_duplicate_ids_are_refused_with_their_lines(tmp_path: Path, verb: list[str]) -> None:
    result = topicq(*verb, write_jsonl(tmp_path / "dups.jsonl", DUPLICATED))
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert "2 ids appear more than once" in result.stderr
    assert "'a' (lines 1, 3); '7' (lines 4, 5)" in result.stderr
    assert "--allow-duplicates" in result.stderr


def test_backfill_allow_duplicates_counts_only_the_last_post_of_each_id(
    tmp_path: Path, promoted_model: str
) -> None:
    result = topicq("backfill", "--dry-run", "--allow-duplicates", write_jsonl(tmp_path / "d.jsonl", DUPLICATED))
    assert result.exit_code == 0, result.output
    assert "2 posts share an id with a later post" in result.stderr
    assert result.stdout.startswith("3 posts: would send 3 in 1 chunks")


@pytest.mark.integration
def test_enqueue_allow_duplicates_sends_the_last_post_of_each_id(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    queue = f"topicq-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("QUEUE", queue)
    result = topicq("enqueue", "--allow-duplicates", write_jsonl(tmp_path / "d.jsonl", DUPLICATED))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"enqueued 3 posts to queue {queue!r}\n"
    client = redis.Redis.from_url(redis_url)
    bodies = [json.loads(base64.b64decode(json.loads(raw)["body"])) for raw in client.lrange(queue, 0, -1)]
    assert sorted((kwargs["id"], kwargs["text"]) for _, kwargs, _ in bodies) == [
        ("7", "second 7"), ("a", "second a"), ("b", "only b")]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("empty.jsonl", "", "empty.jsonl is empty"),
    ("blank.jsonl", "\n\n", "blank.jsonl is empty"),
    ("empty.csv", "", "empty.csv is empty"),
    ("header.csv", "id,text\n", "header.csv has a header but no rows"),
    ("posts.csv", "key,body\n1,x\n", "no id column 'id' or text column 'text'; columns present: key, body"),
])
def test_enqueue_refuses_a_file_without_posts(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    result = topicq("enqueue", str(tmp_path / name))
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_backfill_of_a_dataset_that_is_no_file_names_the_built_in_one(tmp_path: Path) -> None:
    result = topicq("backfill", "--dataset", "20news", "--dry-run")
    assert result.exit_code == 2, result.output
    assert "no such file '20news'; the built-in dataset is '20newsgroups'" in result.stderr


def test_backfill_dry_run_counts_the_chunks_it_would_send(tmp_path: Path, promoted_model: str) -> None:
    posts = [{"id": f"p{i}", "text": f"orbit {i}"} for i in range(10)]
    result = topicq("backfill", "--dry-run", "--chunk", "4", write_jsonl(tmp_path / "p.jsonl", posts))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"10 posts: would send 10 in {math.ceil(10 / 4)} chunks")


def test_backfill_groups_take_commas_like_train(newsgroups_home: str, promoted_model: str) -> None:
    from trainer.datasets import load_newsgroups

    expected = sum(len(load_newsgroups(groups=(word,), subset="test", data_home=newsgroups_home))
                   for word in ("sci", "rec"))
    result = topicq("backfill", "--dataset", "20newsgroups", "--groups", "sci, rec", "--data-home",
                    newsgroups_home, "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{expected} posts: would send {expected} in ")


def test_backfill_without_20_newsgroups_says_how_to_point_at_it(tmp_path: Path, promoted_model: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "nothing-here"))
    result = topicq("backfill", "--dataset", "20newsgroups", "--dry-run")
    assert result.exit_code == 2, result.output
    assert "--data-home" in result.stderr and "SCIKIT_LEARN_DATA" in result.stderr
