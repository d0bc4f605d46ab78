"""Settings and inputs a user can fix get one line and exit 2 (health: FAIL lines and exit 1), never a
traceback; the line names the setting and never shows its password. Read-only verbs never create a
database."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from shared.database.results import DONE, ResultRow, write_rows
from shared.errors import ConfigError
from shared.settings import check_redis_url
from testkit.factories import register_fake_model

BAD_REDIS_URLS = [
    "http://:hunter2@127.0.0.1:6379/0",  # not a Redis scheme
    "redis://:hunter2@127.0.0.1:6379/abc",  # db not a number
    "redis://:hunter2@127.0.0.1:99999/0",  # port out of range
    "redis://:hunter2@127.0.0.1:0/0",
    "redis://:hunter2@127.0.0.1:abc/0",  # port not a number
    "redis://::1:6379/0",  # IPv6 without brackets
    "redis://:hunter2@/0",  # no host
]


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_one_line_error(result: Result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "hunter2" not in result.output
    for text in expected:
        assert text in result.stderr, result.stderr


@pytest.mark.parametrize("url", BAD_REDIS_URLS)
@pytest.mark.parametrize("verb", [("status", "--once"), ("dead-letters",), ("dead-letters", "count"),
                                  ("enqueue", "{posts}")])
def test_a_bad_redis_url_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str,
                                     verb: tuple[str, ...]) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "p1", "text": "orbit"}\n')
    monkeypatch.setenv("REDIS_URL", url)
    assert_one_line_error(topicq(*(part.format(posts=posts) for part in verb)), "REDIS_URL")


@pytest.mark.parametrize("url", ["redis://localhost", "redis://:pw@127.0.0.1:6379/0", "rediss://h.example:6380/3",
                                 "redis://[::1]:6379/0", "unix:///run/redis.sock", "unix:///run/redis.sock?db=2",
                                 "memory://"])
def test_redis_urls_of_every_form_are_taken(url: str) -> None:
    assert check_redis_url(url) == url


@pytest.mark.parametrize("url", BAD_REDIS_URLS + ["unix://", "unix:///run/redis.sock?db=x"])
def test_check_redis_url_names_the_setting_and_hides_the_password(url: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL") as caught:
        check_redis_url(url)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("url", BAD_REDIS_URLS)
def test_health_reports_a_bad_redis_url_as_a_fail_line(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    result = topicq("health")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "hunter2" not in result.output
    assert any(line.startswith("FAIL") and "REDIS_URL" in line for line in result.stdout.splitlines())


@pytest.mark.parametrize("url", ["nu_topicq", "postgresql://:hunter2@127.0.0.1:abc/db"])
def test_health_reports_a_bad_database_url_as_a_fail_line(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    result = topicq("health")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "hunter2" not in result.output
    assert any(line.startswith("FAIL database") and "DATABASE_URL" in line for line in result.stdout.splitlines())


def test_a_redis_database_the_server_lacks_is_one_line(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url.rsplit("/", 1)[0] + "/99")
    for verb in (("dead-letters",), ("dead-letters", "count"), ("status", "--once")):
        assert_one_line_error(topicq(*verb), "REDIS_URL", "99")


@pytest.fixture
def model_with_a_row(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", db_url)
    register_fake_model(db_url, tmp_path / "models")
    write_rows(db_url, [ResultRow(post_id=f"p{i}", model_name="topics", model_version=1, status=DONE,
                                  label="space", score=0.9) for i in range(3)])
    return db_url


@pytest.mark.slow  # trains a version through the CLI first
def test_review_import_lists_rows_the_database_cannot_store(model_with_a_row: str, tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(f'{{"post_id": "p0", "label": "space", "reviewer": "{"r" * 201}"}}\n'
                      '{"post_id": "p1", "label": "space", "text": "nul \\u0000 inside"}\n'
                      '{"post_id": "p2", "label": "space", "reviewer": "ana\\u0000"}\n')
    result = topicq("review", "import", str(labels))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "[parameters" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 4, lines
    assert "line 1" in lines[0] and "reviewer" in lines[0] and "200" in lines[0]
    assert "line 2" in lines[1] and "text" in lines[1] and "NUL" in lines[1]
    assert "line 3" in lines[2] and "reviewer" in lines[2] and "NUL" in lines[2]
    assert "3 bad rows; nothing was imported" in lines[3]


READ_ONLY = [("results",), ("stats",), ("models",), ("review", "export"), ("drift",),
             ("compare", "topics:1", "topics:2")]


@pytest.mark.parametrize("verb", READ_ONLY)
@pytest.mark.parametrize("where", ["nonexistent/dir/x.db", "x.db"])
def test_read_only_verbs_do_not_create_a_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  verb: tuple[str, ...], where: str) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / where}")
    assert_one_line_error(topicq(*verb), "no database at", str(tmp_path / where), "topicq migrate")
    assert not (tmp_path / where).exists() and not (tmp_path / "nonexistent").exists()


def test_health_does_not_create_a_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'nonexistent/dir/x.db'}")
    result = topicq("health")
    assert result.exit_code == 1
    assert any(line.startswith("FAIL database") and "no database at" in line for line in result.stdout.splitlines())
    assert not (tmp_path / "nonexistent").exists()


def test_migrate_creates_the_database_and_then_read_verbs_work(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'new/dir/x.db'}")
    assert topicq("migrate").exit_code == 0
    assert (tmp_path / "new/dir/x.db").is_file()
    result = topicq("results")
    assert result.exit_code == 0 and result.stderr == "no rows match\n"
