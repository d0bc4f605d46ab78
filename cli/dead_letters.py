"""`topicq dead-letters`: list, count, re-send or purge the messages workers could not take."""

from __future__ import annotations

from typing import Any

import click

from cli.safe_output import json_line, printable
from shared.settings import get_settings
from shared.wire import dead_letters


def _client() -> Any:
    import redis

    return redis.Redis.from_url(get_settings().redis_url, socket_connect_timeout=5)


def _queue(queue: str | None) -> str:
    return queue or get_settings().queue


queue_option = click.option("--queue", default=None, help="Queue whose dead letters to use (default QUEUE).")


@click.group("dead-letters", invoke_without_command=True)
@queue_option
@click.pass_context
def dead_letters_command(ctx: click.Context, queue: str | None) -> None:
    """Messages the workers could not take, kept whole in `<queue>.dead` with the reason.

    \b
    Without a subcommand, lists the newest 20.
    Examples:
      topicq dead-letters                       # newest first: time, reason, post ids
      topicq dead-letters list --format jsonl --limit 0 > dead.jsonl
      topicq dead-letters count
      topicq dead-letters resend --limit 10     # oldest first, back onto the queue, unchanged
      topicq dead-letters purge --yes
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_command, queue=queue)


@dead_letters_command.command("list")
@queue_option
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True, help="0 = all.")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True,
              help="jsonl holds each message whole.")
def list_command(queue: str | None, limit: int, fmt: str) -> None:
    """List dead letters, newest first."""
    queue = _queue(queue)
    with _client() as client:
        letters = dead_letters.read(client, queue, limit or None)
        total = dead_letters.count(client, queue)
    if fmt == "jsonl":
        for letter in letters:
            whole = letter.raw.decode("utf-8", errors="replace")
            click.echo(json_line({**letter.summary(), "message": whole}))
        return
    if not letters:
        click.echo(f"no dead letters for queue {queue!r}", err=True)
        return
    for letter in letters:
        summary = letter.summary()
        post_ids = summary["post_ids"]
        ids = ", ".join(map(printable, post_ids[:3])) + (", ..." if len(post_ids) > 3 else "")
        line = f"{printable(summary['at'])}  {printable(summary['reason'])}"
        click.echo(line + (f"  [posts: {ids}]" if ids else ""))
    click.echo(f"{len(letters)} of {total} shown (newest first)", err=True)


@dead_letters_command.command("count")
@queue_option
def count_command(queue: str | None) -> None:
    """How many dead letters the queue has."""
    with _client() as client:
        click.echo(dead_letters.count(client, _queue(queue)))


@dead_letters_command.command("resend")
@queue_option
@click.option("--limit", type=click.IntRange(min=0), default=0, show_default=True, help="0 = all.")
@click.option("--again", is_flag=True,
              help="Also re-send messages that came back after an earlier resend (still broken).")
def resend_command(queue: str | None, limit: int, again: bool) -> None:
    """Put dead letters back on their queue, oldest first, unchanged (after fixing what refused them).

    \b
    Each entry present at the start is moved at most once, so it ends while workers run. A message
    that came back after an earlier resend is still broken: it is skipped unless --again.
    """
    queue = _queue(queue)
    with _client() as client:
        report = dead_letters.resend(client, queue, limit or None, again=again)
        left = dead_letters.count(client, queue)
    skipped = (f"; {report.skipped} skipped: they came back after an earlier resend, still broken "
               "(--again sends them anyway)") if report.skipped else ""
    unreadable = f"; {report.unreadable} unreadable entries left as they are" if report.unreadable else ""
    click.echo(f"re-sent {report.moved} message(s) to queue {queue!r}{skipped}{unreadable}; "
               f"{left} dead letter(s) left")


@dead_letters_command.command("purge")
@queue_option
@click.option("--yes", is_flag=True, help="Do not ask.")
def purge_command(queue: str | None, yes: bool) -> None:
    """Delete every dead letter of the queue."""
    queue = _queue(queue)
    if not yes:
        click.confirm(f"delete every dead letter of queue {queue!r}?", abort=True)
    with _client() as client:
        removed = dead_letters.purge(client, queue)
    click.echo(f"deleted {removed} dead letter(s) of queue {queue!r}")
