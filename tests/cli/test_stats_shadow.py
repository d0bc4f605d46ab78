"""`topicq stats --shadow`: production and each challenger in shadow counted apart, side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from shared.database.results import DONE, ResultRow, write_rows
from shared.model import registry


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def served_and_shadow(sqlite_url: str, redis_url: str, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> str:
    """Three posts served by topics:1; topics:2 scored two of them in shadow, differently."""
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    for version in (1, 2):
        registry.register(sqlite_url, name="topics", version=version, path=tmp_path, sha256="0" * 64,
                          embedder_id="fake:bow:64", metrics={})
    registry.promote(sqlite_url, name="topics", version=1)

    def row(post_id: str, version: int, label: str, shadow: bool = False) -> ResultRow:
        return ResultRow(post_id=post_id, model_name="topics", model_version=version, status=DONE,
                         label=label, score=0.9, shadow=shadow)

    write_rows(sqlite_url, [row("a", 1, "space"), row("b", 1, "space"), row("c", 1, "crypto"),
                            row("a", 2, "space", True), row("b", 2, "crypto", True)])
    return sqlite_url


def test_stats_shadow_shows_each_version_apart(served_and_shadow: str) -> None:
    table = topicq("stats", "--shadow")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["production", "topics:2", "(shadow)"]
    assert "total rows" in lines[1] and lines[1].split()[-2:] == ["3", "2"]
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  ")}
    assert rows["done"] == ["3", "2"]
    assert rows["space"] == ["2", "1"] and rows["crypto"] == ["1", "1"]
    assert rows["topics:1"] == ["3", "-"] and rows["topics:2"] == ["-", "2"]

    summary = json.loads(topicq("stats", "--shadow", "--format", "json").stdout)
    assert summary["total"] == 3 and summary["by_label"] == {"crypto": 1, "space": 2}
    assert summary["shadow"]["topics:2"]["total"] == 2
    assert summary["shadow"]["topics:2"]["by_label"] == {"crypto": 1, "space": 1}


def test_stats_without_shadow_counts_production_only(served_and_shadow: str) -> None:
    summary = json.loads(topicq("stats", "--format", "json").stdout)
    assert summary["total"] == 3 and "shadow" not in summary


def test_stats_shadow_of_a_challenger_version_keeps_its_shadow_rows_out_of_production(
        served_and_shadow: str) -> None:
    summary = json.loads(topicq("stats", "--model", "topics:2", "--shadow", "--format", "json").stdout)
    assert summary["total"] == 0 and summary["shadow"]["topics:2"]["total"] == 2
