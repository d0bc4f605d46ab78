"""Bulk classification: send posts in ready-made chunks, skipping those already done.

Resumable: posts with a `done` row for the production version are not sent
again, so an interrupted backfill is simply run once more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shared import registry
from shared.errors import InvalidPostError, ModelError
from shared.results import done_ids
from shared.settings import Settings
from worker.client import Producer, chunked
from worker.payload import Post, parse_post


@dataclass
class BackfillReport:
    total: int = 0
    skipped_done: int = 0
    invalid: int = 0
    sent: int = 0
    chunks: int = 0
    model_version: int | None = None
    sent_ids: list[str] = field(default_factory=list)  # what to wait for (not filled by dry runs)


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
                       report: BackfillReport | None = None) -> BackfillReport:
    """Validate every post first, then hand each chunk's posts without a `done` row to `handle`.

    Counts go into `report` as they happen, so an interrupted caller can say how far it got.
    """
    report = report or BackfillReport()
    report.model_version = version
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
                on_invalid(exc)
    for chunk in chunked(valid, chunk_size):
        done = done_ids(settings.db_url, model_name=settings.model_name, model_version=version,
                        post_ids=[p.id for p in chunk])
        todo = [p for p in chunk if p.id not in done]
        report.skipped_done += len(chunk) - len(todo)
        if todo:
            if not dry_run:
                handle(todo)
                report.sent_ids += [p.id for p in todo]
            report.chunks += 1
        report.sent += len(todo)
        if progress:
            progress(len(chunk))
    return report


def backfill(posts: Iterable[dict], *, settings: Settings, dry_run: bool = False,
             chunk_size: int | None = None, progress: Callable[[int], object] | None = None,
             on_invalid: Callable[[InvalidPostError], None] | None = None,
             report: BackfillReport | None = None) -> BackfillReport:
    """Validate and send `{"id", "text", "metadata"}` dicts in chunks; returns counts."""
    version = production_version(settings)
    producer = Producer(settings)
    try:
        return backfill_in_chunks(posts, settings=settings, version=version,
                                  chunk_size=chunk_size or settings.backfill_chunk,
                                  handle=producer.send_chunk, dry_run=dry_run, progress=progress,
                                  on_invalid=on_invalid, report=report)
    finally:
        producer.close()
