"""The main job on embedded defaults: train if needed, run a worker, backfill, report.

Steps: make sure Redis answers (or start a local redis-server), migrate the
database, train and promote the sci model when there is no production
version, start a worker process, backfill the sci test set, wait for every
row, then report accuracy from the results table, throughput and batching.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.worker_process import WorkerProcess
from shared.database.results import Status
from shared.errors import ConfigError
from shared.model import registry
from shared.settings import Settings

if TYPE_CHECKING:
    from trainer.datasets import Dataset

DEMO_GROUPS = ("sci",)
# The worker embeds every post (no embedding cache): the posts/s it shows measure the pipeline,
# not lookups of vectors that an earlier run (or the training) left in the cache.
DEMO_WORKER_ENV = {"CACHE_EMBEDDINGS": "false"}


@dataclass
class DemoReport:
    model: str
    posts: int
    rows: int
    accuracy: float
    seconds: float
    posts_per_second: float
    posts_per_embed_call: float | None
    sample: list[dict[str, Any]]


def ensure_redis(url: str, log_dir: Path) -> str | None:
    """Ping Redis; start a local redis-server when it is down and installed. Returns what was done."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
        return None
    except redis.exceptions.ConnectionError:
        pass
    server = shutil.which("redis-server")
    kwargs = client.connection_pool.connection_kwargs
    if server is None or kwargs.get("host") not in {"localhost", "127.0.0.1"}:
        raise ConfigError(
            f"Redis is not reachable at {kwargs.get('host')}:{kwargs.get('port')}. Start one, e.g. "
            "install redis-server (e.g. `apt-get install redis-server`) and run "
            "`redis-server --daemonize yes`, or set REDIS_URL to a Redis you run."
        )
    log_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([server, "--daemonize", "yes", "--port", str(kwargs.get("port", 6379)),
                    "--bind", "127.0.0.1", "--dir", str(log_dir), "--logfile", str(log_dir / "redis.log")],
                   check=True)
    for _ in range(50):
        try:
            client.ping()
            return f"started redis-server on port {kwargs.get('port', 6379)}"
        except redis.exceptions.ConnectionError:
            time.sleep(0.1)
    raise ConfigError("started redis-server but it does not answer; see " + str(log_dir / "redis.log"))


def train_or_serve(settings: Settings, data_home: str | None) -> tuple[str, int]:
    """The production version of MODEL_NAME; trained and promoted first when there is none."""
    name = settings.model_name
    version = registry.resolve(settings.db_url, name=name, alias=settings.model_alias)
    if version is not None:
        click.echo(f"1/4 serving the existing {name}:{version} ({settings.model_alias})")
        return name, version
    from trainer.train import run_training

    click.echo(f"1/4 training {name} on 20 Newsgroups sci, 100 posts per class "
               f"({settings.resolved_embedder()} embedder)")
    trained = run_training(dataset="20newsgroups", groups=DEMO_GROUPS, per_class=100, seed=0,
                           name=name, promote=True, data_home=data_home, settings=settings)
    click.echo(f"    {name}:{trained.version}: test accuracy {trained.metrics['accuracy']:.4f}, "
               f"macro-F1 {trained.metrics['macro_f1']:.4f}; plots in {trained.directory}")
    return name, trained.version


def send_and_wait(settings: Settings, test: Dataset, model: str, timeout: float) -> tuple[int, float]:
    """Backfill the test posts, then wait (with a progress bar) until `model` has a row for each;
    returns how many rows were written meanwhile, and the seconds it took."""
    from tqdm import tqdm

    from cli.backfill import backfill
    from shared.database.results import count_rows

    name, version = model.split(":")

    def rows() -> int:
        return count_rows(settings.db_url, model_name=name, model_version=int(version), post_ids=test.ids)

    before = rows()
    began = time.monotonic()
    posts = [{"id": i, "text": t, "metadata": {"group": g}}
             for i, t, g in zip(test.ids, test.texts, test.labels, strict=True)]
    sent = backfill(posts, settings=settings, on_invalid=lambda e: click.echo(f"    refused: {e}"))
    if sent.invalid:
        click.echo(f"    {sent.invalid} posts refused as invalid will have no row")
    done = before
    with tqdm(total=len(test), initial=before, unit="post", desc="classified", file=sys.stderr) as bar:
        while done < len(test) and time.monotonic() - began < timeout:
            time.sleep(0.5)
            now = rows()
            bar.update(now - done)
            done = now
    return done - before, time.monotonic() - began


def start_worker(log_path: Path, timeout: float = 180) -> WorkerProcess:
    """A worker with this process's settings; it embeds for real (DEMO_WORKER_ENV: no embedding
    cache), so posts/s measures the pipeline."""
    worker = WorkerProcess({**os.environ, **DEMO_WORKER_ENV}, log_path, hostname="topicq@%h")
    try:
        return worker.start(timeout)
    except (RuntimeError, TimeoutError) as exc:
        worker.stop()
        what = str(exc).splitlines()[0]  # "worker exited 1" or "worker not ready after 180s"
        raise ConfigError(f"the {what}; see {log_path}") from None


def report(db_url: str, name: str, version: int, truth: dict[str, str], seconds: float,
           processed: int) -> DemoReport:
    from shared.database.results import query_results, stats

    rows = query_results(db_url, model=f"{name}:{version}", post_ids=list(truth), with_scores=False)
    done = [r for r in rows if r["status"] == Status.DONE]
    correct = sum(r["label"] == truth[r["post_id"]] for r in done)
    return DemoReport(
        model=f"{name}:{version}", posts=len(truth), rows=len(rows),
        accuracy=correct / len(truth) if truth else 0.0, seconds=seconds,
        posts_per_second=processed / seconds if seconds else 0.0,
        posts_per_embed_call=stats(db_url, model=f"{name}:{version}")["posts_per_embed_call"],
        sample=rows[:8],
    )


def throughput_line(result: DemoReport, processed: int) -> str:
    """The rate, saying it was measured with every post embedded (see DEMO_WORKER_ENV)."""
    return (f"    throughput: {processed} posts in {result.seconds:.0f}s = {result.posts_per_second:.1f} "
            f"posts/s, every post embedded (embedding cache off); "
            f"posts per embed call: {result.posts_per_embed_call}")
