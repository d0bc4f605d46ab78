"""`topicq review export` and `topicq review import`: the review queue out, corrections in."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cli.safe_output import csv_value, json_line, write_csv
from shared.errors import DatasetError, ModelError
from shared.post_files import read_post_file
from shared.settings import get_settings

EXPORT_COLUMNS = ["post_id", "label", "score", "runner_up", "runner_up_score", "margin", "reason",
                  "domain_score", "model", "text"]
_MAX_SHOWN = 50  # problem lines printed; the rest are counted


def _model_labels(db_url: str, name: str) -> list[str]:
    """The classes a correction of model `name` may take: those of its production (else newest) version."""
    from shared.model import registry
    from shared.model.store import read_meta

    info = registry.resolve_ref(db_url, name)
    return read_meta(Path(info.path)).labels


@click.group()
def review() -> None:
    """The review queue: export posts flagged for review, import their corrected labels.

    \b
    Examples:
      topicq review export --limit 100 > queue.csv
      topicq review import queue.csv            # post_id,label[,reviewer]; other columns ignored
    """


@review.command("export")
@click.option("--model", default=None, help="NAME or NAME:VERSION (default: MODEL_NAME, all its versions).")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True, help="0 = no limit.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
def export(model: str | None, limit: int, fmt: str) -> None:
    """List posts flagged for review and not yet corrected, the most uncertain first.

    \b
    Columns: post_id, label (the model's), score, runner_up, runner_up_score, margin,
    reason, domain_score (> 1: out of domain), model, text (when kept: KEEP_TEXT).
    Fix the label column of the rows you reviewed, delete the others, and import the file.
    Examples:
      topicq review export --limit 50 > queue.csv
      topicq review export --model topics:3 --format jsonl
    """
    from shared.database.migrate import ensure_schema
    from shared.improvement.corrections import review_queue

    settings = get_settings()
    ensure_schema(settings.db_url, create=False)
    name, _, version = (model or settings.model_name).partition(":")
    if version and not version.isdigit():
        raise click.BadParameter(f"expected NAME or NAME:VERSION, got {model!r}", param_hint="--model")
    rows = review_queue(settings.db_url, model_name=name, version=int(version) if version else None,
                        limit=limit or None)
    if not rows:
        click.echo(f"no posts of {model or name} wait for review", err=True)
        return
    if fmt == "jsonl":
        for row in rows:
            click.echo(json_line(row))
        return
    write_csv(sys.stdout, EXPORT_COLUMNS, rows)


def _field(record: dict[str, Any], key: str, from_csv: bool) -> str:
    """A cell without surrounding blanks; one that `review export` defused against formulas ('=...)
    exactly as it was exported."""
    value = str(record.get(key) or "")
    if from_csv and csv_value(value) != value:
        return csv_value(value)
    return value.strip()


def read_corrections(path: Path, reviewer: str | None) -> tuple[list[Any], list[str]]:
    """The file's rows as CorrectionInputs, and the problems of rows that cannot be one."""
    from shared.improvement.corrections import CorrectionInput

    source = read_post_file(path)
    try:
        source.require_columns(id="post_id", label="label")
    except DatasetError as exc:
        raise DatasetError(f"{exc} (expected post_id,label[,reviewer])") from None
    rows, problems = [], []
    from_csv = source.kind == "csv"
    for line, record in zip(source.lines, source.records, strict=True):
        post_id, label = (_field(record, key, from_csv) for key in ("post_id", "label"))
        if not post_id or not label:
            problems.append(f"line {line}: {'post_id' if not post_id else 'label'} is empty")
            continue
        text = _field(record, "text", from_csv) if from_csv else record.get("text")
        who = _field(record, "reviewer", from_csv) or reviewer
        rows.append(CorrectionInput(line, post_id, label, who,
                                    text if isinstance(text, str) and text.strip() else None))
    return rows, problems


@review.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "name", default=None, help="Model name the labels belong to (default MODEL_NAME).")
@click.option("--reviewer", default=None, help="Reviewer for rows without a reviewer column.")
def import_(file: Path, name: str | None, reviewer: str | None) -> None:
    """Store corrected labels from a CSV or JSONL file (post_id,label[,reviewer]); all or nothing.

    \b
    Each label must be a class of the model; each post must have a result of it.
    Every bad row is listed on its own line, and then nothing is imported.
    Examples:
      topicq review import queue.csv
      topicq review import labels.jsonl --reviewer ana
    """
    from shared.database.migrate import ensure_schema
    from shared.improvement.corrections import check_corrections, store_corrections

    settings = get_settings()
    ensure_schema(settings.db_url)
    name = name or settings.model_name
    try:
        labels = _model_labels(settings.db_url, name)
    except ModelError:
        raise ModelError(f"model {name!r} is not registered (see `topicq models`)") from None
    rows, problems = read_corrections(file, reviewer)
    problems += check_corrections(settings.db_url, model_name=name, rows=rows, labels=labels)
    if problems:
        problems.sort(key=lambda line: int(line.split(":")[0].split()[1]))
        for line in problems[:_MAX_SHOWN]:
            click.echo(f"{file}: {line}", err=True)
        more = f" ({len(problems) - _MAX_SHOWN} not shown)" if len(problems) > _MAX_SHOWN else ""
        raise DatasetError(f"{file}: {len(problems)} bad rows{more}; nothing was imported")
    stored = store_corrections(settings.db_url, model_name=name, rows=rows)
    click.echo(f"imported {stored} corrections of {name} from {file}")
