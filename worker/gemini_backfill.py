"""Backfill through the Gemini Batch API: half price, no queue, rows written like a worker's.

`topicq backfill ... --gemini-batch-api` validates the posts, skips those with a
`done` row for the production version, and for each chunk of the rest embeds
the texts the cache lacks in Gemini batch jobs (GeminiBatchEmbedder), then
classifies them and upserts their rows exactly as a worker does
(`classify_batch`, `write_rows`). Resumable: a chunk is written when its jobs
end, so an interrupted run is simply run again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from shared import registry
from shared.embedders.base import Embedder
from shared.errors import InvalidPostError, ModelError
from shared.settings import Settings
from worker.backfill import BackfillReport
from worker.client import chunked
from worker.payload import Post, parse_post
from worker.pipeline import classify_batch
from worker.rows import done_ids, write_rows
from worker.serving import check_compatible

CHUNK = 5000  # posts per chunk: written to the database when all of its jobs have ended


def backfill_with_batch_api(posts: Iterable[dict[str, Any]], *, settings: Settings, embedder: Embedder,
                            chunk_size: int = CHUNK, dry_run: bool = False,
                            progress: Callable[[int], object] | None = None,
                            on_invalid: Callable[[InvalidPostError], None] | None = None) -> BackfillReport:
    """Classify `{"id", "text", "metadata"}` dicts with batch-job embeddings; returns counts."""
    version = registry.resolve(settings.db_url, name=settings.model_name, alias=settings.model_alias)
    if version is None:
        raise ModelError(f"no {settings.model_alias!r} version of model {settings.model_name!r} "
                         "to backfill with: train one with `topicq train ... --promote`")
    model = registry.load(settings.db_url, name=settings.model_name, version=version)
    check_compatible(model, embedder.id)
    report = BackfillReport(model_version=version)
    valid: list[Post] = []
    for raw in posts:
        report.total += 1
        try:
            valid.append(parse_post({"id": raw.get("id"), "text": raw.get("text"),
                                     "metadata": raw.get("metadata") or {}},
                                    max_text_chars=settings.max_text_chars))
        except InvalidPostError as exc:
            report.invalid += 1
            if on_invalid:
                on_invalid(exc)
    cache_url = settings.db_url if settings.cache_embeddings else None
    for chunk in chunked(valid, chunk_size):
        done = done_ids(settings.db_url, model_name=settings.model_name, model_version=version,
                        post_ids=[p.id for p in chunk])
        todo = [p for p in chunk if p.id not in done]
        report.skipped_done += len(chunk) - len(todo)
        if todo and not dry_run:
            write_rows(settings.db_url, classify_batch(todo, embedder, model, cache_url=cache_url))
            report.chunks += 1
        report.sent += len(todo)
        if progress:
            progress(len(chunk))
    return report
