"""CLI verbs for operators: health (probes) and status (a live view of the queue and the workers)."""

from __future__ import annotations

import sys

import click

from cli.safe_output import json_line, printable, printable_lines
from shared.settings import get_settings


@click.command()
@click.option("--liveness", is_flag=True, help="Only the heartbeat: is the consumer loop alive?")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def health(liveness: bool, fmt: str) -> None:
    """Is the worker on this host ready? One line per check; exit 0 when all pass, 1 when not.

    \b
    Checks the worker's heartbeat file (the consumer loop refreshes it every
    HEARTBEAT_INTERVAL_S; stale after HEARTBEAT_MAX_AGE_S), Redis and the database.
    Made for probes: no Celery round trip, well under a second of CPU.
    Examples:
      topicq health                 # readiness
      topicq health --liveness      # heartbeat only
    """
    from cli.health import Check, run_checks
    from shared.errors import ConfigError

    try:
        settings = get_settings()
    except ConfigError as exc:  # e.g. a REDIS_URL no client can use: a failed check, not a traceback
        checks = [Check("settings", False, str(exc))]
    else:
        checks = run_checks(settings, liveness=liveness)
    ready = all(check.ok for check in checks)
    if fmt == "json":
        click.echo(json_line({"ready": ready, "checks": [vars(c) for c in checks]}))
    else:
        for check in checks:
            click.echo(printable(check.line()))
    sys.exit(0 if ready else 1)


@click.command()
@click.option("--once", is_flag=True, help="Print one view and exit (for scripts).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--interval", type=click.FloatRange(min=0.5), default=3.0, show_default=True,
              help="Seconds between refreshes.")
def status(once: bool, fmt: str, interval: float) -> None:
    """A live view of QUEUE and its workers, refreshed every few seconds (Ctrl-C to leave).

    \b
    Queue depth (ready, in flight, held by workers) and the oldest message's age;
    posts/s in, taken and out by outcome; p50/p95 latency from send to row; errors
    by reason; the workers seen with their model version. Rates and latency cover
    the workers' last 30 s (workers publish them to Redis when METRICS_PORT is set).
    Examples:
      topicq status
      topicq status --once --format json | jq .backlog.depth
    """
    import time

    import redis

    from cli.status_view import build_view, render
    from shared.database.connection import safe_url
    from shared.errors import TransientError
    from shared.wire.backlog import read_backlog
    from worker.presence import worker_figures

    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    previous = None
    try:
        while True:
            try:
                backlog = read_backlog(client, settings.queue)
                live = worker_figures(client, settings.queue)
            except redis.RedisError as exc:
                if once or previous is None:
                    raise TransientError(f"cannot reach Redis at {safe_url(settings.redis_url)} ({exc}); "
                                         "start it or set REDIS_URL") from None
                backlog, live = None, []
            view = build_view(settings.queue, backlog, live, now=time.time(), previous=previous)
            text = json_line(view) if fmt == "json" else printable_lines(render(view))
            if once:
                click.echo(text)
                return
            if fmt == "text":
                click.clear()
            click.echo(text)
            previous = view if backlog is not None else previous
            time.sleep(interval)
    except KeyboardInterrupt:
        return
    finally:
        client.close()
