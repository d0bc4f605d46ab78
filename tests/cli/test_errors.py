"""Settings and connection mistakes: one line naming the problem and the fix, exit status 2, secrets masked."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import make_url

from cli.main import main
from testkit.databases import ADMIN_URL


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_one_line_error(result: Result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for text in expected:
        assert text in result.stderr


def test_an_invalid_setting_is_one_line_and_verbose_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDER", "bogus")
    assert_one_line_error(topicq("stats"), "EMBEDDER", "'local'")
    verbose = topicq("-v", "stats")
    assert verbose.exit_code == 2
    assert "Traceback" in verbose.stderr and verbose.stderr.endswith("(fix the environment variable)\n")


def test_unreachable_redis_fails_within_seconds_naming_the_masked_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "p1", "text": "orbit"}\n')
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    started = time.monotonic()
    result = topicq("enqueue", str(posts))
    assert time.monotonic() - started < 5
    assert_one_line_error(result, "redis://:***@127.0.0.1:1/0", "REDIS_URL")
    assert "hunter2" not in result.output


@pytest.mark.parametrize("url", ["mysql://user:hunter2@db/topicq", "not a url"])
def test_an_unusable_database_url_is_one_line(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    result = topicq("models")
    assert_one_line_error(result, "DATABASE_URL")
    assert "hunter2" not in result.output


@pytest.mark.integration
def test_a_postgres_database_that_does_not_exist_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    url = make_url(ADMIN_URL).set(database="topicq_no_such_db", password="hunter2")
    monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
    result = topicq("stats")
    assert_one_line_error(result, "topicq_no_such_db", "DATABASE_URL")
    assert "hunter2" not in result.output


@pytest.mark.integration
@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_postgres_urls_without_a_driver_use_psycopg(
    monkeypatch: pytest.MonkeyPatch, postgres_url: str, scheme: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"{scheme}://" + postgres_url.split("://", 1)[1])
    result = topicq("stats")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("total rows: 0")
