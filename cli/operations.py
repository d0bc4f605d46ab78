"""The operators' verbs: `topicq worker` (run one), `health` (probes), `status` (a live view of the
queue and its workers) and `migrate` (the database schema)."""

from __future__ import annotations

import logging
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

import click

from cli.safe_output import json_line, printable, printable_lines
from shared.settings import get_settings


@click.command()
@click.option("-c", "--concurrency", default=2, show_default=True,
              help="Batches processed at once (threads). With 2, the next batch embeds while the "
                   "previous one is classified and written; the encoder takes one batch at a time.")
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@click.option("-n", "--hostname", default="topicq@%h", show_default=True,
              help="Worker name (%h = this host's name).")
def worker(concurrency: int, loglevel: str, hostname: str) -> None:
    """Run a worker: consume posts from the queue, classify them in batches, write rows.

    \b
    Serves the `production` alias of MODEL_NAME and follows promotions. The model
    and the embedder are loaded before the worker says `ready.`; while the database
    cannot be used it waits for it (logged, and `topicq health` says why). It exits
    non-zero when it stops on an error.
    Examples:
      topicq worker
      BATCH_SIZE=64 REDIS_URL=redis://queue:6379/0 topicq worker -c 4
    """
    from worker import metrics
    from worker.heartbeat import Heartbeat
    from worker.rejected_posts import PendingRejections
    from worker.worker_state import database_ready, get_worker_state, wait_for_database

    settings = get_settings()
    if settings.metrics_port:  # before the model loads, so topicq_model_info is set by the first look
        metrics.enable(low_confidence_score=settings.low_confidence_score)
    name = hostname.replace("%h", socket.gethostname())

    def load() -> Any:
        from shared.database.migrate import ensure_schema

        ensure_schema(settings.db_url)
        database_ready(settings)  # before the embedder is built: it may depend on the served version
        loaded = get_worker_state(settings, node=name)
        _load_before_ready(loaded, settings)
        return loaded

    # A database that is down (or refusing) at start is waited for, as running workers do, not an exit.
    waiting = Heartbeat(settings.heartbeat_path, worker=name, queue=settings.queue, embedder=lambda: None)
    runtime = wait_for_database(load, heartbeat=waiting)
    follower = runtime.follow_aliases()  # an idle worker follows promotions too
    from worker.app import app

    watch = _Watch.start(app, runtime, settings, name)
    # Dead letters' rejected rows the database could not take when they were made.
    pending = PendingRejections(settings.redis_url, settings.queue, settings.heartbeat_interval_s).start()
    argv = ["worker", "-Q", settings.queue, "-P", "threads", "-c", str(concurrency), "-l", loglevel,
            "--without-gossip", "--without-mingle", "-n", hostname]
    try:
        # Celery's own exit status: non-zero when the worker stopped on an error.
        status = app.start(argv) or 0
    finally:
        follower.stop()  # before the presence is cleared: no look may list the stopped worker again
        pending.stop()
        watch.stop()
        runtime.presence.clear()  # `topicq models` / `stats` / `status` list running workers only
    sys.exit(status)


def _load_before_ready(runtime: Any, settings: Any) -> None:
    """The model and the embedder's weights (or Gemini's key check) before the first message."""
    started = time.monotonic()
    from worker.served_model import warm_up

    model = runtime.models.current()  # fail fast: no model, or a model of another embedder
    warm_up(runtime.embedder)  # weights loaded now, not at the first batch; Gemini: a refused key here
    logging.getLogger("worker").info(
        "serving %s with %s (loaded in %.1fs); queue %r, batches of %d or every %ss", model.key,
        runtime.embedder.id, time.monotonic() - started, settings.queue, settings.batch_size,
        settings.batch_wait_s)


@dataclass
class _Watch:
    """What lets others watch a worker: the heartbeat, and with metrics on the exporter (metrics,
    backlog, drift, /healthz) and the figures its presence records for `topicq status`."""

    heartbeat: Any
    exporter: Any = None
    figures: Any = None

    @classmethod
    def start(cls, app: Any, runtime: Any, settings: Any, name: str) -> _Watch:
        from worker import metrics
        from worker.heartbeat import Heartbeat, consumer_step

        presence = runtime.presence  # the served pair: EMBEDDER=auto swaps the embedder with the version
        heartbeat = Heartbeat(settings.heartbeat_path, worker=name, queue=settings.queue,
                              embedder=lambda: presence.embedder, serving=lambda: presence.serving)
        app.steps["consumer"].add(consumer_step(heartbeat, settings.heartbeat_interval_s))
        if not settings.metrics_port:
            return cls(heartbeat)
        from shared.wire.backlog import BacklogCollector
        from worker.drift_metrics import DriftCollector
        from worker.exporter import start_exporter
        from worker.presence import FiguresPublisher

        metrics.REGISTRY.register(BacklogCollector(settings.redis_url, settings.queue))
        metrics.REGISTRY.register(DriftCollector(
            settings.db_url, name=settings.model_name, alias=settings.model_alias,
            window_s=settings.drift_metrics_window_s, bucket_s=settings.drift_bucket_s))
        exporter = start_exporter(settings.metrics_host, settings.metrics_port, heartbeat=heartbeat,
                                  max_age_s=settings.heartbeat_max_age_s)
        return cls(heartbeat, exporter, FiguresPublisher(presence).start())

    def stop(self) -> None:
        self.heartbeat.remove()
        if self.exporter is not None:
            self.exporter.stop()
        if self.figures is not None:
            self.figures.stop()

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


@click.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic `upgrade head`).

    \b
    Example:
      DATABASE_URL=postgresql+psycopg://localhost/test topicq migrate
    """
    from shared.database.connection import safe_url
    from shared.database.migrate import upgrade

    url = get_settings().db_url
    upgrade(url)
    click.echo(f"database schema up to date: {safe_url(url)}")
