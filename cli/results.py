"""The verbs that read the results table: `topicq results` (rows) and `topicq stats` (counts)."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from cli.options import Timestamp, model_ref
from cli.safe_output import json_line, printable, write_csv
from shared.database.results import Status
from shared.settings import get_settings


def _iso(value: Any) -> Any:
    """Times as ISO 8601 with their zone, so they can be read back (e.g. by --since)."""
    return value.isoformat() if isinstance(value, datetime) else value


def _print_rows(rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "jsonl":
        for row in rows:
            click.echo(json_line(row, default=lambda value: str(_iso(value))))
        return
    columns = ["post_id", "label", "score", "model_name", "model_version", "status", "review_reason", "error",
               "processed_at"]
    if fmt == "csv":
        write_csv(sys.stdout, columns,
                  ({c: _iso(row.get(c)) for c in columns} for row in rows))
        return
    table = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in table]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in table:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = printable(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_registered(db_url: str, model: str | None) -> None:
    """A mistyped --model is an error, not an empty answer."""
    from shared.errors import ModelError
    from shared.model import registry

    if model is None:
        return
    name, _, version = model.partition(":")
    if version:
        registry.get_version(db_url, name=name, version=int(version))
    elif not registry.list_versions(db_url, name=name):
        raise ModelError(f"model {name!r} is not registered (see `topicq models`)")


@click.command()
@click.option("--label", default=None)
@click.option("--model", default=None, callback=model_ref, help="NAME or NAME:VERSION.")
@click.option("--min-score", type=click.FloatRange(0, 1), default=None, help="0 to 1.")
@click.option("--status", type=click.Choice([s.value for s in Status]), default=None)
@click.option("--since", type=Timestamp(), default=None,
              help="Processed at or after: ISO 8601 time (no zone = UTC) or a date.")
@click.option("--until", type=Timestamp(), default=None, help="Processed before; like --since.")
@click.option("--needs-review", is_flag=True,
              help="Only rows flagged for review (low score or margin, or out of domain).")
@click.option("--limit", type=int, default=50, show_default=True, help="0 = no limit.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table",
              show_default=True)
@click.option("--shadow", is_flag=True,
              help="Add the rows of challengers scored in shadow (SHADOW_ALIAS).")
def results(label: str | None, model: str | None, min_score: float | None, status: str | None,
            since: datetime | None, until: datetime | None, needs_review: bool, limit: int,
            fmt: str, shadow: bool) -> None:
    """Show classification results, newest first.

    \b
    Examples:
      topicq results --label sci.space --min-score 0.9
      topicq results --needs-review --model topics
      topicq results --status rejected --format jsonl
      topicq results --model topics:2 --since 2026-01-01 --limit 0 --format csv > out.csv
      topicq results --since 2026-11-30T14:21:00Z
      topicq results --model topics:3      # a challenger's rows, scored in shadow
    """
    from shared.database.results import query_results

    db_url = get_settings().db_url
    _check_registered(db_url, model)
    rows = query_results(db_url, label=label, model=model, min_score=min_score, status=status,
                         since=since, until=until, needs_review=True if needs_review else None,
                         limit=limit or None, with_scores=fmt == "jsonl", shadow=shadow)
    if not rows:
        click.echo("no rows match", err=True)
        return
    _print_rows(rows, fmt)


@click.command()
@click.option("--model", default=None, callback=model_ref, help="NAME or NAME:VERSION.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--shadow", is_flag=True,
              help="Count the rows of each challenger scored in shadow too, beside production's.")
def stats(model: str | None, fmt: str, shadow: bool) -> None:
    """Counts of results by status, label and model version.

    \b
    Examples:
      topicq stats --model topics
      topicq stats --shadow                # the production and the challenger's rows side by side
    """
    from shared.database.results import stats as compute
    from worker.presence import TTL_S, serving_workers

    db_url = get_settings().db_url
    _check_registered(db_url, model)
    summary = compute(db_url, model=model, in_shadow=False if shadow else None)
    # Each challenger apart: its rows are the same posts again, adding them would count posts twice.
    challengers = ({key: compute(db_url, model=key, in_shadow=True)
                    for key in compute(db_url, model=model, in_shadow=True)["by_model"]} if shadow else {})
    workers = serving_workers(get_settings().redis_url, model_name=model.partition(":")[0] if model else None)
    if fmt == "json":
        extra = {"shadow": challengers} if shadow else {}
        click.echo(json_line({**summary, **extra, "workers": [w.listed() for w in workers]}, indent=2))
        return
    if challengers:
        _print_stats_side_by_side(summary, challengers)
    else:
        per_call = summary["posts_per_embed_call"]
        click.echo(f"total rows: {summary['total']}   posts per embed call: "
                   f"{'-' if per_call is None else per_call}")
        for title in ("by_status", "by_model", "by_label"):
            click.echo(f"{title.removeprefix('by_')}:")
            for key, count in summary[title].items():
                click.echo(f"  {printable(key):<40} {count}")
        if shadow:
            click.echo("shadow: no rows scored in shadow")
    click.echo("workers:" if workers else f"workers: none reported in the last {TTL_S // 60} minutes")
    for state in workers:
        click.echo(f"  {printable(state.describe())}")


def _print_stats_side_by_side(summary: dict[str, Any], challengers: dict[str, dict[str, Any]]) -> None:
    """One column for production's rows, one for each challenger's rows in shadow."""
    columns = [summary, *challengers.values()]
    width = max(12, *(len(key) + 9 for key in challengers))

    def line(title: str, cells: list[object]) -> None:
        click.echo(f"{printable(title):<42}" + "".join(
            f"{'-' if cell is None else cell!s:<{width}}" for cell in cells).rstrip())

    line("", ["production", *(f"{printable(key)} (shadow)" for key in challengers)])
    line("total rows", [c["total"] for c in columns])
    line("posts per embed call", [c["posts_per_embed_call"] for c in columns])
    for title in ("by_status", "by_model", "by_label"):
        click.echo(f"{title.removeprefix('by_')}:")
        keys = sorted({key for c in columns for key in c[title]}, key=str)
        for key in keys:
            line(f"  {key}", [c[title].get(key) for c in columns])

