"""Small things an operator reads: no `None` for a figure not known yet, no Python dict for a summary,
and a plot written where the command says, not into the current folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from shared.database.results import DONE, ResultRow, write_rows
from shared.improvement.corrections import CorrectionInput, store_corrections
from testkit.factories import labelled_posts, register_fake_model
from testkit.tables import post_rows, write_table

ROOT = Path(__file__).resolve().parents[2]


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def two_versions(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    for _ in range(2):
        register_fake_model(sqlite_url, tmp_path / "models")
    posts = labelled_posts(3, seed=5)
    write_rows(sqlite_url, [ResultRow(post_id=post_id, model_name="topics", model_version=version, status=DONE,
                                      label=topic, score=0.9, text=text)
                            for version in (1, 2) for post_id, text, topic in posts])
    return sqlite_url


def test_stats_of_an_empty_database_show_no_none(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    result = topicq("stats")
    assert result.exit_code == 0, result.output
    assert "None" not in result.stdout and "posts per embed call: -" in result.stdout


def test_compare_writes_its_plot_under_topicq_home_and_says_where(two_versions: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    result = topicq("compare", "topics:1", "topics:2")
    assert result.exit_code == 0, result.output
    assert list(here.iterdir()) == []
    png = tmp_path / "home" / "plots" / "compare-topics-1-2.png"
    assert png.is_file() and f"wrote {png}" in result.stderr


@pytest.mark.slow  # a full `topicq train --with-corrections` run
def test_train_with_corrections_prints_no_python_dict(two_versions: str, tmp_path: Path) -> None:
    """In a process of its own: the summary went out through logging, which CliRunner does not capture."""
    posts = labelled_posts(3, seed=5)
    store_corrections(two_versions, model_name="topics",
                      rows=[CorrectionInput(i, post_id, topic, "ana", text) for i, (post_id, text, topic)
                            in enumerate(posts, 1)])
    data = write_table(tmp_path / "posts.jsonl", post_rows(10))
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "train", "--dataset", str(data), "--embedder", "fake", "--hidden", "16",
         "--epochs", "2", "--with-corrections"],
        cwd=ROOT, env={**os.environ}, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "corrections: 9 posts added" in result.stdout
    assert "{'" not in result.stdout + result.stderr, result.stderr
