"""Bulk classification: send posts in ready-made chunks, skipping those already done.

Resumable: posts with a `done` row for the production version are not sent
again, so an interrupted backfill is simply run once more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from shared import registry
from shared.errors import InvalidPostError, ModelError
from shared.settings import Settings
from worker.client import Producer, chunked
from worker.payload import Post
from worker.rows import done_ids


@dataclass
class BackfillReport:
    total: int = 0
    skipped_done: int = 0
    invalid: int = 0
    sent: int = 0
    chunks: int = 0
    model_version: int | None = None


def backfill(posts: Iterable[dict], *, settings: Settings, dry_run: bool = False,
             chunk_size: int | None = None, progress: Callable[[int], object] | None = None,
             on_invalid: Callable[[InvalidPostError], None] | None = None) -> BackfillReport:
    """Validate and send `{"id", "text", "metadata"}` dicts in chunks; returns counts."""
    version = registry.resolve(settings.db_url, name=settings.model_name, alias=settings.model_alias)
    if version is None:
        raise ModelError(f"no {settings.model_alias!r} version of model {settings.model_name!r} "
                         "to backfill with: train one with `topicq train ... --promote`")
    report = BackfillReport(model_version=version)
    producer = Producer(settings)
    try:
        valid: list[Post] = []
        for raw in posts:
            report.total += 1
            try:
                valid.append(producer.validate(raw.get("id"), raw.get("text"), raw.get("metadata")))
            except InvalidPostError as exc:
                report.invalid += 1
                if on_invalid:
                    on_invalid(exc)
        for chunk in chunked(valid, chunk_size or settings.backfill_chunk):
            done = done_ids(settings.db_url, model_name=settings.model_name, model_version=version,
                            post_ids=[p.id for p in chunk])
            todo = [p for p in chunk if p.id not in done]
            report.skipped_done += len(chunk) - len(todo)
            if todo and not dry_run:
                producer.send_chunk(todo)
                report.chunks += 1
            report.sent += len(todo)
            if progress:
                progress(len(chunk))
    finally:
        producer.close()
    return report
