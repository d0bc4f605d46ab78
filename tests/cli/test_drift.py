"""`topicq drift` mistakes: one line naming the problem (exit 2), and a version without a reference."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from shared.model.embedders.fake import FakeEmbedder
from testkit.factories import register_fake_model


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def home(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    return sqlite_url


def test_bad_options_are_one_line_errors(home: str, tmp_path: Path) -> None:
    register_fake_model(home, tmp_path / "models")
    usage = topicq("drift", "--since", "yesterday")  # click's usage error: the usage line, then one line
    assert usage.exit_code == 2 and "Traceback" not in usage.stderr
    assert "expected a duration back from now like 10m or 1d, or an ISO 8601 time" in usage.stderr
    for args, expected in ((["--window", "7m"], "not a multiple of DRIFT_BUCKET_S (300 s)"),
                           (["--model", "nosuch"], "no model matches 'nosuch'")):
        result = topicq("drift", *args)
        assert result.exit_code == 2, result.output
        assert expected in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_no_rows_yet_is_no_drift_and_an_old_version_says_it_has_no_reference(home: str, tmp_path: Path) -> None:
    register_fake_model(home, tmp_path / "models")
    quiet = topicq("drift", "--since", "10m", "--window", "5m")
    assert quiet.exit_code == 0 and "no drift in 0 windows" in quiet.stdout and "no rows of topics:1" in quiet.stderr
    register_fake_model(home, tmp_path / "models", reference=False)  # saved as before references existed
    result = topicq("drift")
    assert result.exit_code == 2 and "topics:2 has no drift reference" in result.stderr, result.output


def test_promoting_to_the_shadow_alias_says_whether_workers_will_score_it(home: str, tmp_path: Path) -> None:
    register_fake_model(home, tmp_path / "models")
    register_fake_model(home, tmp_path / "models", promote=False)
    same = topicq("promote", "topics", "2", "--alias", "staging")
    assert same.exit_code == 0 and "workers score topics:2 in shadow" in same.stdout
    register_fake_model(home, tmp_path / "models", promote=False, embedder=FakeEmbedder(dim=32))
    other = topicq("promote", "topics", "3", "--alias", "staging", "--force")
    assert other.exit_code == 0 and "warning: workers will not score it in shadow" in other.stderr, other.output
