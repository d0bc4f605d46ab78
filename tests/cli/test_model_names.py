"""A model name is a plain name: one that would leave MODEL_DIR (../x, /abs, .) is refused with one line,
exit 2, wherever a name comes in; and the store refuses a directory outside MODEL_DIR itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from shared.errors import ModelError
from shared.model import registry
from shared.settings import get_settings
from testkit.factories import register_fake_model
from testkit.tables import post_rows, write_table

BAD_NAMES = ["../../escaped", "..", ".", "/tmp/abs", "a/b", "", "x" * 101, "a\x1bb", "a b"]


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_refused(result: Result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    for text in expected:
        assert text in result.stderr, result.stderr


def test_train_with_an_escaping_name_writes_nothing_outside_model_dir(tmp_path: Path) -> None:
    posts = write_table(tmp_path / "posts.jsonl", post_rows(10))
    result = topicq("train", "--dataset", str(posts), "--embedder", "fake", "--hidden", "16", "--epochs", "2",
                    "--name", "../../escaped")
    assert_refused(result, "model name", "'../../escaped'")
    assert not any(tmp_path.rglob("escaped"))


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("verb", [("promote", "{}", "1"), ("rollback", "{}"), ("evaluate", "{}"),
                                  ("evaluate", "{}:2")])
def test_verbs_that_take_a_name_refuse_one_that_is_not_plain(verb: tuple[str, ...], name: str) -> None:
    assert_refused(topicq(*(part.format(name) for part in verb)), "model name")


@pytest.mark.parametrize("name", ["../up", ".."])
def test_a_model_name_setting_that_is_not_plain_is_refused(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("MODEL_NAME", name)
    assert_refused(topicq("models"), "MODEL_NAME")


@pytest.mark.parametrize("name", ["topics", "gq", "news-2026.v1", "A_b-9", "x" * 100])
def test_plain_names_are_taken(name: str) -> None:
    assert registry.check_model_name(name) == name


@pytest.mark.parametrize("name", [*BAD_NAMES, "-dash", "_x", "a\\b"])
def test_names_that_are_not_plain_are_refused(name: str) -> None:
    with pytest.raises(ModelError, match="model name"):
        registry.check_model_name(name)


def test_the_store_refuses_a_version_directory_outside_model_dir(sqlite_url: str, tmp_path: Path) -> None:
    """Defence in depth: the name check bypassed, publishing still cannot write outside MODEL_DIR."""
    with pytest.raises(ModelError, match="model name"):
        register_fake_model(sqlite_url, tmp_path / "models", name="../outside")
    assert not (tmp_path / "outside").exists()


def test_rollback_of_an_unknown_model_says_so() -> None:
    get_settings()
    assert_refused(topicq("rollback", "nosuch"), "'nosuch' is not registered")
