"""The verbs that put posts on the queue: `topicq enqueue` (a file), `backfill` (a whole dataset, in
chunks, resumable) and `retry-failed` (the posts recorded `failed`). Dead letters: cli/dead_letters.py."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from cli.options import model_ref, split_words
from cli.safe_output import printable
from shared.errors import DatasetError, InvalidPostError
from shared.settings import get_settings

ALLOW_DUPLICATES = click.option(
    "--allow-duplicates", is_flag=True,
    help="Send a file in which an id repeats: only the last post of each id is sent.")


def _unique_posts(posts: list[dict[str, Any]], source: str, allow_duplicates: bool) -> list[dict[str, Any]]:
    from cli.posts_from_file import last_post_per_id

    kept, dropped = last_post_per_id(posts, source=source, allow_duplicates=allow_duplicates)
    if dropped:
        click.echo(f"warning: {source}: {dropped} posts share an id with a later post; "
                   "the last post of each id is sent, the others are not", err=True)
    return kept


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id-column", default="id", show_default=True)
@click.option("--text-column", default="text", show_default=True)
@ALLOW_DUPLICATES
def enqueue(file: Path, id_column: str, text_column: str, allow_duplicates: bool) -> None:
    """Send the posts of a JSONL or CSV file to the queue, one message each.

    \b
    Every post is validated first; nothing is sent when one is invalid or an id repeats.
    Examples:
      topicq enqueue posts.jsonl        # lines like {"id": "p1", "text": "..."}
      topicq enqueue posts.csv --id-column post_id --text-column body
    """
    from cli.posts_from_file import read_posts
    from shared.wire.producer import check_broker, enqueue_many

    posts = _unique_posts(read_posts(file, id_column=id_column, text_column=text_column), str(file),
                          allow_duplicates)
    check_broker(get_settings().redis_url)
    try:
        sent = enqueue_many(posts)
    except InvalidPostError as exc:
        raise InvalidPostError(f"{file}: {exc}; nothing was sent") from None
    click.echo(f"enqueued {sent} posts to queue {get_settings().queue!r}")


def _dataset_posts(dataset: str, groups: tuple[str, ...], subset: str, data_home: str | None,
                   id_column: str, text_column: str, allow_duplicates: bool) -> list[dict[str, Any]]:
    from trainer.datasets import NEWSGROUPS

    if dataset == NEWSGROUPS:
        from trainer.datasets import load_newsgroups

        data = load_newsgroups(groups=groups, subset="test" if subset == "test" else "train",
                               data_home=data_home)
        return [{"id": i, "text": t, "metadata": {"group": label}}
                for i, t, label in zip(data.ids, data.texts, data.labels, strict=True)]
    from cli.posts_from_file import read_posts

    path = Path(dataset)
    if not path.is_file():
        raise DatasetError(f"no such file {dataset!r}; the built-in dataset is {NEWSGROUPS!r}")
    posts = read_posts(path, id_column=id_column, text_column=text_column)
    return _unique_posts(posts, dataset, allow_duplicates)


@click.command()
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--dataset", default=None, help="20newsgroups, or a JSONL/CSV file (same as FILE).")
@click.option("--groups", multiple=True, callback=split_words, metavar="WORD[,WORD]",
              help="20 Newsgroups: every group whose name contains a word (sci = sci.*).")
@click.option("--subset", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--data-home", default=None, help="scikit-learn data folder (default SCIKIT_LEARN_DATA).")
@click.option("--id-column", default="id", show_default=True)
@click.option("--text-column", default="text", show_default=True)
@click.option("--chunk", type=int, default=None, help="Posts per message (default BACKFILL_CHUNK).")
@click.option("--dry-run", is_flag=True,
              help="Count what would be sent against the database's rows; send nothing and read nothing "
                   "from Redis (posts still queued and the workers' model are not looked up).")
@click.option("--gemini-batch-api", is_flag=True,
              help="Embed with Gemini batch jobs (half price, up to 24 h) here, not through the workers.")
@click.option("--poll-s", type=float, default=30.0, show_default=True,
              help="With --gemini-batch-api: seconds between polls of a batch job.")
@ALLOW_DUPLICATES
@click.option("--wait", is_flag=True,
              help="Then wait until every sent post has a row; exit 1 if some failed or were rejected.")
@click.option("--wait-only", is_flag=True,
              help="Send nothing: wait until every post of the source has a row (after an interrupted "
                   "--wait, or to follow another run's backfill); exit 1 as --wait does.")
@click.option("--timeout", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="With --wait or --wait-only: seconds to wait before giving up (exit 1).")
@click.option("--model", default=None, metavar="NAME",
              help="The model QUEUE's workers serve (default: what they report, else MODEL_NAME).")
def backfill(file: str | None, dataset: str | None, groups: tuple[str, ...], subset: str,
             data_home: str | None, id_column: str, text_column: str, chunk: int | None,
             dry_run: bool, gemini_batch_api: bool, poll_s: float, allow_duplicates: bool,
             wait: bool, wait_only: bool, timeout: float, model: str | None) -> None:
    """Classify a whole dataset through the workers, in chunks; resumable.

    \b
    Posts already `done` for the production model version, and posts still queued
    from an earlier run, are skipped. The model is the one QUEUE's workers serve.
    Examples:
      topicq backfill --dataset 20newsgroups --groups sci --subset test
      topicq backfill archive.jsonl --dry-run
      topicq backfill archive.jsonl --wait --timeout 600
      topicq backfill archive.jsonl --wait-only        # send nothing, wait for the rows
      QUEUE=gq topicq backfill archive.jsonl --model gq
      topicq backfill archive.jsonl --gemini-batch-api   # EMBEDDER=gemini models only
    """
    from tqdm import tqdm

    from cli.backfill import BackfillReport, queue_model
    from cli.backfill import backfill as run_backfill

    source = file or dataset
    if not source:
        raise click.UsageError("give a FILE or --dataset")
    if wait_only and (dry_run or gemini_batch_api):
        raise click.UsageError("--wait-only sends nothing: leave out --dry-run and --gemini-batch-api")
    if model is not None:
        from shared.settings import model_name_problem

        if problem := model_name_problem(model):
            raise click.BadParameter(problem, param_hint="--model")
    settings = get_settings()
    posts = _dataset_posts(source, groups, subset, data_home, id_column, text_column, allow_duplicates)
    if gemini_batch_api:
        settings = settings.model_copy(update={"model_name": model or settings.model_name})
        _backfill_with_batch_api(posts, settings, chunk=chunk, dry_run=dry_run, poll_s=poll_s)
        return
    if not (dry_run or wait_only):  # before the workers' records are read: say Redis is down, not "no worker"
        from shared.wire.producer import check_broker

        check_broker(settings.redis_url)
    name, assumed = (model or settings.model_name, None) if dry_run else queue_model(settings, model)
    settings = settings.model_copy(update={"model_name": name})
    if assumed:
        click.echo(f"warning: {assumed}", err=True)
    if wait_only:
        _wait_only(posts, settings, timeout_s=timeout)
        return
    report, started = BackfillReport(), datetime.now(UTC)
    try:
        with tqdm(total=len(posts), unit="post", desc="backfill", file=sys.stderr) as bar:
            run_backfill(posts, settings=settings, dry_run=dry_run, chunk_size=chunk, progress=bar.update,
                         on_invalid=lambda e: tqdm.write(f"refused: {printable(e)}"), report=report)
    except KeyboardInterrupt:
        _interrupted(f"interrupted: sent {len(report.sent_ids)} of {len(posts)} posts in {report.chunks} "
                     "chunks; run the same command again to resume (posts already done or still queued are "
                     "skipped)")
    verb = "would send" if dry_run else "sent"
    queued = f"{report.skipped_queued} still queued, " if report.skipped_queued else ""
    click.echo(f"{report.total} posts: {verb} {report.sent} in {report.chunks} chunks, "
               f"{report.skipped_done} already done for {settings.model_name}:{report.model_version}, "
               f"{queued}{report.invalid} refused as invalid")
    if wait and (report.sent_ids or report.queued_ids):
        _wait_for_rows(settings, report.sent_ids + report.queued_ids, since=started, timeout_s=timeout)


def _interrupted(message: str) -> NoReturn:
    """Ctrl-C: say where things stand instead of click's bare `Aborted!`."""
    click.echo(f"\n{message}", err=True)
    raise SystemExit(130)


def _wait_only(posts: list[dict[str, Any]], settings: Any, *, timeout_s: float) -> None:
    """`--wait-only`: the rows of the source's valid posts, whenever they were written; nothing is sent."""
    from cli.backfill import BackfillReport, valid_posts
    from cli.wait_for_rows import ANY_TIME

    report = BackfillReport()
    post_ids = [post.id for post in valid_posts(posts, settings=settings, report=report)]
    invalid = f" ({report.invalid} invalid posts are never sent)" if report.invalid else ""
    click.echo(f"{report.total} posts: waiting for the rows of {len(post_ids)} by "
               f"{settings.model_name}{invalid}; nothing is sent")
    _wait_for_rows(settings, post_ids, since=ANY_TIME, timeout_s=timeout_s, noun="posts",
                   interrupted="interrupted while waiting: nothing was sent; the workers go on with "
                               "what is queued (see `topicq stats`)")


def _wait_for_rows(settings: Any, post_ids: list[str], *, since: datetime, timeout_s: float,
                   noun: str = "sent posts",
                   interrupted: str = "interrupted while waiting: every post was sent, and the workers go "
                                      "on with them (see `topicq stats`); --wait-only waits again, "
                                      "sending nothing") -> None:
    """Until every sent post has a row; exit 1 when some have none in time, or failed or were rejected."""
    from tqdm import tqdm

    from cli.wait_for_rows import wait_for_rows

    try:
        with tqdm(total=len(post_ids), unit="post", desc="classified", file=sys.stderr) as bar:
            report = wait_for_rows(settings.db_url, model_name=settings.model_name, post_ids=post_ids,
                                   since=since, timeout_s=timeout_s, progress=bar.update, noun=noun)
    except KeyboardInterrupt:
        _interrupted(interrupted)
    if report.pending:
        click.echo(f"timed out after {timeout_s:g} s: {report.summary()}; {report.pending} have no row yet "
                   "(their messages stay queued)", err=True)
        raise SystemExit(1)
    click.echo(report.summary())
    if not report.ok:
        click.echo("some posts were not classified: see `topicq results --status rejected` and "
                   "`--status failed`", err=True)
        raise SystemExit(1)


def _backfill_with_batch_api(posts: list[dict[str, Any]], settings: Any, *, chunk: int | None,
                             dry_run: bool, poll_s: float) -> None:
    from tqdm import tqdm

    from cli.gemini_backfill import CHUNK, backfill_with_batch_api
    from shared.model.embedders.gemini_batch import GeminiBatchEmbedder

    states: dict[str, str] = {}

    def on_job(name: str, state: str) -> None:
        if states.get(name) != state:
            states[name] = state
            tqdm.write(f"{name}: {state}")

    embedder = GeminiBatchEmbedder.from_settings(settings, poll_s=poll_s, on_job=on_job)
    try:
        with tqdm(total=len(posts), unit="post", desc="backfill", file=sys.stderr) as bar:
            report = backfill_with_batch_api(posts, settings=settings, embedder=embedder,
                                             chunk_size=chunk or CHUNK, dry_run=dry_run,
                                             progress=bar.update,
                                             on_invalid=lambda e: tqdm.write(f"refused: {printable(e)}"))
    finally:
        embedder.close()
    verb = "would embed" if dry_run else "classified"
    click.echo(f"{report.total} posts: {verb} {report.sent} with Gemini batch jobs in {len(states)} jobs, "
               f"{report.skipped_done} already done for {settings.model_name}:{report.model_version}, "
               f"{report.invalid} refused as invalid")

def _check_queue_serves(settings: Any, name: str) -> None:
    """Refuse to send `name`'s posts where the workers serve another model: their rows would be lost."""
    from shared.errors import ConfigError
    from worker.presence import serving_workers

    if name != settings.model_name:
        raise ConfigError(f"this shell sends to queue {settings.queue!r}, served for MODEL_NAME="
                          f"{settings.model_name!r}, not {name!r}: run it again with MODEL_NAME={name} "
                          f"QUEUE=<the queue of {name}'s workers>")
    others = [s for s in serving_workers(settings.redis_url)
              if s.queue == settings.queue and (s.serving or "").partition(":")[0] != name]
    if others:
        raise ConfigError(f"queue {settings.queue!r} is served by workers of another model "
                          f"({others[0].describe()}): set QUEUE to the queue of {name}'s workers")


@click.command("retry-failed")
@click.option("--model", default=None, callback=model_ref,
              help="NAME or NAME:VERSION; NAME must be MODEL_NAME (the model QUEUE's workers serve), "
                   "which is the default.")
@click.option("--limit", type=int, default=None)
def retry_failed(model: str | None, limit: int | None) -> None:
    """Send the posts recorded `failed` to the queue again.

    \b
    A failed row stays until the row of the new attempt replaces it, so a post
    always has a row. Posts go to QUEUE, whose workers must serve MODEL_NAME.
    Examples:
      topicq retry-failed
      MODEL_NAME=gq QUEUE=gq topicq retry-failed --model gq:2
    """
    from shared.database.results import drop_replaced_failed_rows, failed_rows
    from shared.wire.producer import Producer, check_broker

    settings = get_settings()
    name, _, version = (model or settings.model_name).partition(":")
    _check_queue_serves(settings, name)
    db_url = settings.db_url
    replaced = drop_replaced_failed_rows(db_url, model_name=name)
    rows = failed_rows(db_url, model_name=name, model_version=int(version) if version else None, limit=limit)
    if rows:
        check_broker(settings.redis_url)
        producer = Producer(settings)
        try:
            for row in rows:
                producer.send(producer.validate(row.post_id, row.text, row.post_metadata))
        finally:
            producer.close()
    cleared = f"; {replaced} failed rows already replaced by newer rows were removed" if replaced else ""
    click.echo(f"sent {len(rows)} failed posts of {model or name} again to queue {settings.queue!r}; "
               f"their failed rows stay until the new rows replace them{cleared}")
