"""`topicq train / evaluate / models / promote / rollback`, in-process with click's CliRunner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from shared.database.migrate import upgrade
from shared.settings import get_settings
from testkit.factories import register_fake_model
from testkit.tables import post_rows, write_table

FAST = ["--embedder", "fake", "--hidden", "64", "--epochs", "10"]


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def posts_jsonl(tmp_path: Path) -> str:
    rows = [{"post": r["id"], "body": r["text"], "topic": r["label"]} for r in post_rows(30)]
    return str(write_table(tmp_path / "posts.jsonl", rows))


def last_line(stderr: str) -> str:
    """The last message on stderr, after the progress bars."""
    return stderr.splitlines()[-1]


def train(posts: str, *extra: str) -> Result:
    return topicq("train", "--dataset", posts, "--text-column", "body", "--label-column", "topic",
                  "--id-column", "post", *FAST, *extra)


@pytest.mark.slow  # a full `topicq train` run; tests/trainer/test_train.py covers training in the fast set
def test_train_reports_version_metrics_cache_and_files(posts_jsonl: str) -> None:
    first = train(posts_jsonl, "--promote")
    assert first.exit_code == 0, first.output
    assert re.search(r"trained topics version 1 on 72 posts \(fit: (\d+) epochs, kept (\d+)\) in", first.stdout)
    accuracy, macro_f1 = map(float, re.search(r"test accuracy ([\d.]+), macro-F1 ([\d.]+) on 18 posts\n",
                                              first.stdout).groups())
    assert accuracy >= 0.9 and macro_f1 >= 0.9
    assert re.search(r"  space +precision [\d.]{5}  recall [\d.]{5}  support 6\n", first.stdout)
    assert "embeddings: 0 from cache, 90 newly computed\n" in first.stdout
    assert "confusion_matrix.png" in first.stdout and "MODEL_CARD.md" in first.stdout
    assert "promoted: production -> topics:1" in first.stdout

    second = train(posts_jsonl, "--name", "topics")
    assert "trained topics version 2" in second.stdout
    assert "embeddings: 90 from cache, 0 newly computed (all from cache)" in second.stdout


@pytest.mark.slow  # trains two versions through the CLI
def test_models_promote_rollback_and_evaluate(posts_jsonl: str) -> None:
    train(posts_jsonl, "--promote")
    train(posts_jsonl)

    listed = json.loads(topicq("models", "--format", "json").stdout)
    assert [(m["version"], m["aliases"]) for m in listed] == [(1, ["production"]), (2, [])]
    metrics = listed[1]["metrics"]
    assert metrics["accuracy"] >= 0.9 and metrics["n"] == 18 and listed[0]["embedder_id"] == "fake:bow:64"

    assert topicq("promote", "topics", "2").stdout == "production: topics:1 -> topics:2\n"
    table = topicq("models").stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "VERSION", "ALIASES", "ACCURACY", "MACRO-F1"]
    assert table[2].split()[:5] == ["topics", "2", "production",
                                    f"{metrics['accuracy']:.4f}", f"{metrics['macro_f1']:.4f}"]
    assert topicq("rollback", "topics").stdout == "production: topics:2 -> topics:1\n"

    evaluated = topicq("evaluate", "topics", "--dataset", posts_jsonl, "--text-column", "body",
                       "--label-column", "topic", "--id-column", "post", "--test-size", "0.2",
                       "--format", "json")
    report = json.loads(evaluated.stdout)
    assert (report["name"], report["version"], report["n"]) == ("topics", 1, 18)
    assert report["seen_in_training"] == 0 and "warning" not in evaluated.stderr
    assert report["accuracy"] == listed[0]["metrics"]["accuracy"]  # the same held-out posts
    assert (report["cache_hits"], report["cache_misses"]) == (18, 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--dataset", "absent.csv", "--embedder", "fake"], "error: no such file: absent.csv\n"),
        (["train", "--dataset", "20news", "--embedder", "fake"],
         "error: no such file: 20news; the built-in dataset is named '20newsgroups'\n"),
        (["rollback", "topics"], "error: model 'topics' is not registered"),
        (["promote", "topics", "4"], "error: model topics:4 is not registered"),
        (["evaluate", "topics:7"], "error: model topics:7 is not registered"),
    ],
)
def test_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = topicq(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


@pytest.mark.slow  # a full `topicq train` run on 20 Newsgroups
def test_newsgroups_groups_accept_commas_and_repeats(newsgroups_home: str) -> None:
    result = topicq("train", "--groups", "sci.med,space", "--groups", "crypt", "--per-class", "10",
                    "--test-per-class", "5", "--data-home", newsgroups_home, *FAST)
    assert result.exit_code == 0, result.output
    assert "on 30 posts" in result.stdout and "on 15 posts" in result.stdout
    listed = re.findall(r"^  (\S+) +precision", result.stdout, flags=re.MULTILINE)
    assert listed == ["sci.crypt", "sci.med", "sci.space"]


def test_help_shows_examples() -> None:
    for verb in ("train", "evaluate", "models", "promote", "rollback"):
        result = topicq(verb, "--help")
        assert result.exit_code == 0 and "Example" in result.stdout, verb


def test_an_empty_file_is_called_empty(tmp_path: Path) -> None:
    empty = tmp_path / "posts.csv"
    empty.write_text("")
    result = topicq("train", "--dataset", str(empty), "--embedder", "fake")
    assert (result.exit_code, result.stderr) == (2, f"error: {empty} is empty\n")


@pytest.mark.slow  # trains, then evaluates through the CLI
def test_evaluate_on_the_training_file_warns_with_the_overlap(posts_jsonl: str) -> None:
    train(posts_jsonl)

    result = topicq("evaluate", "topics", "--dataset", posts_jsonl, "--text-column", "body",
                    "--label-column", "topic", "--id-column", "post")

    assert result.exit_code == 0, result.output
    assert "on 90 posts" in result.stdout
    assert re.fullmatch(r"warning: 72 of these 90 posts were training posts of topics:1, so these figures "
                        r"overstate accuracy on new posts; accuracy on the other 18: [\d.]{6}",
                        last_line(result.stderr))


def test_evaluate_says_when_a_version_kept_no_record_of_its_training_posts(posts_jsonl: str) -> None:
    settings = get_settings()
    upgrade(settings.db_url)
    register_fake_model(settings.db_url, settings.models_path)  # as versions were saved before

    result = topicq("evaluate", "topics", "--dataset", posts_jsonl, "--text-column", "body",
                    "--label-column", "topic", "--id-column", "post")

    assert last_line(result.stderr) == ("note: topics:1 kept no record of its training posts: "
                                        "cannot tell how many of these 90 it was trained on")
