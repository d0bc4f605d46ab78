"""`topicq promote` and a version whose labels differ from the alias's current version's."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from testkit.tables import post_rows, write_table

FAST = ["--embedder", "fake", "--hidden", "32", "--epochs", "5"]


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def train(tmp_path: Path, renamed: dict[str, str], *extra: str) -> None:
    """A version trained on the test posts with some labels renamed."""
    rows = [{**row, "label": renamed.get(row["label"], row["label"])} for row in post_rows(10)]
    path = write_table(tmp_path / f"posts-{len(list(tmp_path.iterdir()))}.jsonl", rows)
    result = topicq("train", "--dataset", str(path), "--id-column", "id", *FAST, *extra)
    assert result.exit_code == 0, result.output


@pytest.mark.slow  # trains three versions through the CLI
def test_promote_refuses_other_labels_and_warns_of_some(tmp_path: Path) -> None:
    train(tmp_path, {}, "--promote")                                             # crypto, medicine, space
    train(tmp_path, {"crypto": "ciphers", "medicine": "health", "space": "astro"})  # none in common
    train(tmp_path, {"crypto": "ciphers"})                                       # one renamed

    refused = topicq("promote", "topics", "2")
    assert refused.exit_code == 2, refused.output
    assert refused.stderr == ("error: not promoted: topics:2 shares no label with production topics:1 "
                              "(added: astro, ciphers, health; removed: crypto, medicine, space): reviews "
                              "of earlier posts would all be refused; promote it with --force\n")
    assert topicq("models").stdout.splitlines()[1].split()[:3] == ["topics", "1", "production"]

    partly = topicq("promote", "topics", "3")
    assert partly.exit_code == 0, partly.output
    assert partly.stdout == "production: topics:1 -> topics:3\n"
    assert partly.stderr == ("warning: topics:3's labels differ from production topics:1's "
                             "(added: ciphers; removed: crypto)\n")

    forced = topicq("promote", "topics", "2", "--force")
    assert forced.exit_code == 0, forced.output
    assert forced.stdout == "production: topics:3 -> topics:2\n"
    assert "added: astro, health; removed: medicine, space" in forced.stderr
