"""`topicq demo`: the README's main job, end to end on embedded defaults."""

from __future__ import annotations

import click

from cli.demo_steps import DEMO_GROUPS
from shared.settings import get_settings


@click.command()
@click.option("--data-home", default=None, help="scikit-learn data folder (default SCIKIT_LEARN_DATA).")
@click.option("--timeout", default=1800, show_default=True, help="Seconds to wait for all rows.")
def demo(data_home: str | None, timeout: int) -> None:
    """Train (if needed), run a worker, backfill the sci test set, and report from the results table.

    \b
    Uses SQLite and the model store under TOPICQ_HOME (./.topicq), the default
    embedder (local-onnx: int8 MiniLM, no torch in the worker), and Redis at
    REDIS_URL (a local redis-server is started if needed).
    Example:
      SCIKIT_LEARN_DATA=../shared/data/20newsgroups topicq demo
    """
    from cli.demo_steps import (
        ensure_redis,
        report,
        send_and_wait,
        start_worker,
        throughput_line,
        train_or_serve,
    )
    from trainer.datasets import load_newsgroups

    settings = get_settings()
    started_redis = ensure_redis(settings.redis_url, settings.topicq_home / "redis")
    if started_redis:
        click.echo(started_redis)
    name, version = train_or_serve(settings, data_home)
    test = load_newsgroups(groups=DEMO_GROUPS, subset="test", data_home=data_home)
    truth = dict(zip(test.ids, test.labels, strict=True))
    log_path = settings.topicq_home / "demo-worker.log"
    click.echo(f"2/4 starting a worker (log: {log_path})")
    worker = start_worker(log_path)
    try:
        click.echo(f"3/4 backfilling {len(truth)} sci test posts")
        processed, seconds = send_and_wait(settings, test, f"{name}:{version}", timeout)
    finally:
        worker.stop()
    result = report(settings.db_url, name, version, truth, seconds, processed=processed)
    click.echo(f"4/4 results for {result.model}: {result.rows}/{result.posts} rows")
    click.echo(f"    accuracy from the results table: {result.accuracy:.4f}")
    if processed:
        click.echo(throughput_line(result, processed))
    else:
        click.echo("    every post was already classified by this version (nothing sent)")
    click.echo("    sample:")
    for row in result.sample:
        click.echo(f"      {row['post_id']:<28} {row['label'] or '-':<16} {row['score'] or 0:.3f}  "
                   f"(true: {truth[row['post_id']]})")
    click.echo("query more with: topicq results --label sci.space --limit 5   |   topicq stats")
    if result.rows < result.posts:
        raise SystemExit(f"only {result.rows} of {result.posts} posts have rows after {timeout}s")
