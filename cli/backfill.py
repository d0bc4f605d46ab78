"""Bulk classification: send posts in ready-made chunks, skipping those already done or still queued.

Resumable: posts with a `done` row for the production version, and posts whose
messages still wait in the queue (shared/wire/queued_posts.py), are not sent again,
so an interrupted backfill is simply run once more.

The model is the one QUEUE's workers serve (their records in Redis,
worker/presence.py), so `QUEUE=gq topicq backfill` waits for and skips gq's
rows even when MODEL_NAME is left at its default; `--model` says it outright.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shared.database.results import done_ids
from shared.errors import ConfigError, InvalidPostError, ModelError
from shared.model import registry
from shared.settings import Settings
from shared.wire.payload import Post, parse_post
from shared.wire.producer import Producer, chunked


@dataclass
class BackfillReport:
    total: int = 0
    skipped_done: int = 0
    invalid: int = 0
    skipped_queued: int = 0
    sent: int = 0
    chunks: int = 0
    model_version: int | None = None
    sent_ids: list[str] = field(default_factory=list)  # what to wait for (not filled by dry runs)
    queued_ids: list[str] = field(default_factory=list)  # sent before and still waiting: waited for too


def queue_model(settings: Settings, requested: str | None = None) -> tuple[str, str | None]:
    """The model whose rows posts sent to QUEUE become, and a warning when that is only assumed.

    QUEUE's workers say what they serve; MODEL_NAME (or `requested`) that contradicts
    them is refused, as are workers of two models on one queue (their rows would be split).
    """
    from worker.presence import serving_workers

    queue = settings.queue
    served = sorted({(s.serving or s.refused or "").partition(":")[0]
                     for s in serving_workers(settings.redis_url) if s.queue == queue} - {""})
    if len(served) > 1:
        raise ConfigError(f"queue {queue!r} is served by workers of {' and '.join(served)}: a backfill's "
                          f"posts would be split between them (MODEL_NAME={settings.model_name}, "
                          f"QUEUE={queue}); give each model's workers a QUEUE of their own")
    named = requested or ("model_name" in settings.model_fields_set and settings.model_name) or None
    if served and named and named != served[0]:
        how = "--model" if requested else "MODEL_NAME"
        raise ConfigError(f"{how} says {named!r} but the workers of QUEUE={queue} serve {served[0]!r}: "
                          f"their rows would not be {named!r}'s; set QUEUE to the queue of {named}'s "
                          f"workers, or leave out {how} to backfill {served[0]}")
    if served:
        return served[0], None
    if named or "queue" not in settings.model_fields_set:
        return named or settings.model_name, None
    return settings.model_name, (f"no worker of QUEUE={queue} has said which model it serves: backfilling "
                                 f"MODEL_NAME={settings.model_name}; if the queue is another model's, "
                                 "say it with --model NAME")


def production_version(settings: Settings) -> int:
    """The version a backfill classifies with: MODEL_NAME's MODEL_ALIAS."""
    version = registry.resolve(settings.db_url, name=settings.model_name, alias=settings.model_alias)
    if version is None:
        raise ModelError(f"no {settings.model_alias!r} version of model {settings.model_name!r} "
                         "to backfill with: train one with `topicq train ... --promote`")
    return version


def backfill_in_chunks(posts: Iterable[dict], *, settings: Settings, version: int, chunk_size: int,
                       handle: Callable[[list[Post]], object], dry_run: bool = False,
                       progress: Callable[[int], object] | None = None,
                       on_invalid: Callable[[InvalidPostError], None] | None = None,
                       report: BackfillReport | None = None,
                       queued: set[str] | frozenset[str] = frozenset()) -> BackfillReport:
    """Validate every post first, then hand each chunk's posts with neither a `done` row nor a
    message in `queued` to `handle`.

    Counts go into `report` as they happen, so an interrupted caller can say how far it got.
    """
    report = report or BackfillReport()
    report.model_version = version
    valid = valid_posts(posts, settings=settings, report=report, on_invalid=on_invalid)
    for chunk in chunked(valid, chunk_size):
        done = done_ids(settings.db_url, model_name=settings.model_name, model_version=version,
                        post_ids=[p.id for p in chunk])
        waiting = [p.id for p in chunk if p.id not in done and p.id in queued]
        todo = [p for p in chunk if p.id not in done and p.id not in queued]
        report.skipped_done += len(done)
        report.skipped_queued += len(waiting)
        report.queued_ids += waiting
        if todo:
            if not dry_run:
                handle(todo)
                report.sent_ids += [p.id for p in todo]
            report.chunks += 1
        report.sent += len(todo)
        if progress:
            progress(len(chunk))
    return report


def valid_posts(posts: Iterable[dict], *, settings: Settings, report: BackfillReport,
                on_invalid: Callable[[InvalidPostError], None] | None = None) -> list[Post]:
    """The posts that pass validation; the others are counted and handed to `on_invalid`."""
    valid: list[Post] = []
    for raw in posts:
        report.total += 1
        try:
            valid.append(parse_post({"id": raw.get("id"), "text": raw.get("text"),
                                     "metadata": raw.get("metadata") or {}},
                                    max_text_chars=settings.max_text_chars,
                                    max_metadata_bytes=settings.max_metadata_bytes))
        except InvalidPostError as exc:
            report.invalid += 1
            if on_invalid:
                on_invalid(_located(exc, raw))
    return valid


def _located(exc: InvalidPostError, raw: dict) -> InvalidPostError:
    """The refusal with the post's id and the file line it is on, so it can be found and fixed."""
    where = [f"post {exc.post_id!r}" if exc.post_id is not None else "a post without an id"]
    if raw.get("line") is not None:
        where.append(f"(line {raw['line']})")
    return InvalidPostError(f"{' '.join(where)}: {exc}", post_id=exc.post_id)


def still_queued(settings: Settings) -> set[str]:
    """Ids of posts whose messages wait in QUEUE."""
    import redis

    from shared.wire.queued_posts import queued_post_ids

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=30)
    try:
        return queued_post_ids(client, settings.queue)
    finally:
        client.close()


def backfill(posts: Iterable[dict], *, settings: Settings, dry_run: bool = False,
             chunk_size: int | None = None, progress: Callable[[int], object] | None = None,
             on_invalid: Callable[[InvalidPostError], None] | None = None,
             report: BackfillReport | None = None) -> BackfillReport:
    """Validate and send `{"id", "text", "metadata"}` dicts in chunks; returns counts.

    `settings.model_name` is the model of QUEUE's workers (queue_model). A dry run reads
    nothing from Redis, so posts still queued count as to be sent."""
    version = production_version(settings)
    queued = set() if dry_run else still_queued(settings)
    producer = Producer(settings)
    try:
        return backfill_in_chunks(posts, settings=settings, version=version,
                                  chunk_size=chunk_size or settings.backfill_chunk,
                                  handle=producer.send_chunk, dry_run=dry_run, progress=progress,
                                  on_invalid=on_invalid, report=report, queued=queued)
    finally:
        producer.close()
