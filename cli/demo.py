"""`topicq demo`: the README's main job, end to end on embedded defaults."""

from __future__ import annotations

import sys
import time

import click

from shared import registry
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
    from tqdm import tqdm

    from cli.demo_steps import DEMO_GROUPS, ensure_redis, report, start_worker
    from shared.results import count_rows
    from trainer.datasets import load_newsgroups
    from worker.backfill import backfill

    settings = get_settings()
    started_redis = ensure_redis(settings.redis_url, settings.topicq_home / "redis")
    if started_redis:
        click.echo(started_redis)
    name = settings.model_name
    version = registry.resolve(settings.db_url, name=name, alias=settings.model_alias)
    if version is None:
        from trainer.train import run_training

        click.echo(f"1/4 training {name} on 20 Newsgroups sci, 100 posts per class "
                   f"({settings.resolved_embedder()} embedder)")
        trained = run_training(dataset="20newsgroups", groups=DEMO_GROUPS, per_class=100, seed=0,
                               name=name, promote=True, data_home=data_home, settings=settings)
        version = trained.version
        click.echo(f"    {name}:{version}: test accuracy {trained.metrics['accuracy']:.4f}, "
                   f"macro-F1 {trained.metrics['macro_f1']:.4f}; plots in {trained.directory}")
    else:
        click.echo(f"1/4 serving the existing {name}:{version} ({settings.model_alias})")

    test = load_newsgroups(groups=DEMO_GROUPS, subset="test", data_home=data_home)
    truth = dict(zip(test.ids, test.labels, strict=True))
    log_path = settings.topicq_home / "demo-worker.log"
    click.echo(f"2/4 starting a worker (log: {log_path})")
    worker = start_worker(log_path)
    try:
        click.echo(f"3/4 backfilling {len(truth)} sci test posts")
        before = count_rows(settings.db_url, model_name=name, model_version=version, post_ids=test.ids)
        began = time.monotonic()
        posts = [{"id": i, "text": t, "metadata": {"group": g}} for i, t, g in
                 zip(test.ids, test.texts, test.labels, strict=True)]
        sent = backfill(posts, settings=settings, on_invalid=lambda e: click.echo(f"    refused: {e}"))
        if sent.invalid:
            click.echo(f"    {sent.invalid} posts refused as invalid will have no row")
        with tqdm(total=len(truth), initial=before, unit="post", desc="classified", file=sys.stderr) as bar:
            done = before
            while done < len(truth) and time.monotonic() - began < timeout:
                time.sleep(0.5)
                now = count_rows(settings.db_url, model_name=name, model_version=version, post_ids=test.ids)
                bar.update(now - done)
                done = now
        seconds = time.monotonic() - began
    finally:
        worker.stop()
    result = report(settings.db_url, name, version, truth, seconds, processed=done - before)
    click.echo(f"4/4 results for {result.model}: {result.rows}/{result.posts} rows")
    click.echo(f"    accuracy from the results table: {result.accuracy:.4f}")
    if done > before:
        click.echo(f"    throughput: {done - before} posts in {result.seconds:.0f}s = "
                   f"{result.posts_per_second:.1f} posts/s; "
                   f"posts per embed call: {result.posts_per_embed_call}")
    else:
        click.echo("    every post was already classified by this version (nothing sent)")
    click.echo("    sample:")
    for row in result.sample:
        click.echo(f"      {row['post_id']:<28} {row['label'] or '-':<16} {row['score'] or 0:.3f}  "
                   f"(true: {truth[row['post_id']]})")
    click.echo("query more with: topicq results --label sci.space --limit 5   |   topicq stats")
    if result.rows < result.posts:
        raise SystemExit(f"only {result.rows} of {result.posts} posts have rows after {timeout}s")
