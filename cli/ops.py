"""CLI verbs for operators: health (probes) and status (a live view of the queue and the workers)."""

from __future__ import annotations

import json
import sys

import click

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
    from worker.health import run_checks

    checks = run_checks(get_settings(), liveness=liveness)
    ready = all(check.ok for check in checks)
    if fmt == "json":
        click.echo(json.dumps({"ready": ready, "checks": [vars(c) for c in checks]}))
    else:
        for check in checks:
            click.echo(check.line())
    sys.exit(0 if ready else 1)
