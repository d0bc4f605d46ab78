"""`topicq results / stats / models` as a user reads them: times with their zone, clear empty answers."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from shared.database.results import DONE, ResultRow, write_rows
from shared.model import registry

EARLY = datetime(2026, 11, 30, 13, 0, tzinfo=UTC)
LATE = datetime(2026, 11, 30, 14, 30, tzinfo=UTC)


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def two_rows(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Rows `early` and `late` of topics:1 on SQLite, which keeps no time zone."""
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    registry.register(sqlite_url, name="topics", version=1, path=tmp_path, sha256="0" * 64,
                      embedder_id="fake:bow:64", metrics={})
    write_rows(sqlite_url, [
        ResultRow(post_id=post_id, model_name="topics", model_version=1, status=DONE, label="space",
                  score=0.9, processed_at=at)
        for post_id, at in (("early", EARLY), ("late", LATE))])
    return sqlite_url


def post_ids(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [json.loads(line)["post_id"] for line in result.stdout.splitlines()]


@pytest.mark.parametrize(("since", "expected"), [
    ("2026-11-30T14:21:00Z", ["late"]),
    ("2026-11-30T15:21:00+01:00", ["late"]),
    ("2026-11-30T14:21:00", ["late"]),  # no zone: UTC
    ("2026-11-30 12:59", ["late", "early"]),
    ("2026-11-30", ["late", "early"]),
    ("2026-12-01", []),
])
def test_since_takes_iso_8601_times_and_dates(two_rows: str, since: str, expected: list[str]) -> None:
    assert post_ids(topicq("results", "--since", since, "--format", "jsonl")) == expected


def test_times_in_every_format_carry_their_zone_and_read_back_as_since(two_rows: str) -> None:
    late = json.loads(topicq("results", "--format", "jsonl").stdout.splitlines()[0])
    assert late["processed_at"] == LATE.isoformat()
    assert post_ids(topicq("results", "--since", late["processed_at"], "--format", "jsonl")) == ["late"]

    table_cell = topicq("results").stdout.splitlines()[1].split()[-1]
    assert post_ids(topicq("results", "--since", table_cell, "--format", "jsonl")) == ["late"]

    csv_cell = list(csv.reader(io.StringIO(topicq("results", "--format", "csv").stdout)))[1][-1]
    assert post_ids(topicq("results", "--since", csv_cell, "--format", "jsonl")) == ["late"]

    [model] = json.loads(topicq("models", "--format", "json").stdout)
    assert datetime.fromisoformat(model["created_at"]).tzinfo is not None


def test_a_time_that_is_no_time_is_refused(two_rows: str) -> None:
    result = topicq("results", "--since", "last tuesday")
    assert result.exit_code == 2
    assert "expected an ISO 8601 time like 2026-11-30T14:21:00Z" in result.stderr


def test_no_match_is_said_on_stderr_not_shown_as_a_lone_header(two_rows: str) -> None:
    for fmt in ("table", "csv", "jsonl"):
        result = topicq("results", "--label", "nosuch", "--format", fmt)
        assert result.exit_code == 0
        assert (result.stdout, result.stderr) == ("", "no rows match\n")


@pytest.mark.parametrize(("args", "message"), [
    (["results", "--model", "nosuch"], "model 'nosuch' is not registered"),
    (["results", "--model", "topics:9"], "model topics:9 is not registered"),
    (["stats", "--model", "nosuch"], "model 'nosuch' is not registered"),
])
def test_an_unknown_model_is_an_error(two_rows: str, args: list[str], message: str) -> None:
    result = topicq(*args)
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("score", ["2", "-0.1"])
def test_min_score_outside_0_to_1_is_refused(two_rows: str, score: str) -> None:
    result = topicq("results", "--min-score", score)
    assert result.exit_code == 2
    assert "--min-score" in result.stderr and "0<=x<=1" in result.stderr
