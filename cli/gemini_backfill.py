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

from cli.backfill import BackfillReport, backfill_in_chunks, production_version
from shared.database.results import write_rows
from shared.errors import InvalidPostError
from shared.model import registry
from shared.model.embedders.base import Embedder
from shared.settings import Settings
from shared.wire.payload import Post
from worker.pipeline import classify_batch

CHUNK = 5000  # posts per chunk: written to the database when all of its jobs have ended


def backfill_with_batch_api(posts: Iterable[dict[str, Any]], *, settings: Settings, embedder: Embedder,
                            chunk_size: int = CHUNK, dry_run: bool = False,
                            progress: Callable[[int], object] | None = None,
                            on_invalid: Callable[[InvalidPostError], None] | None = None) -> BackfillReport:
    """Classify `{"id", "text", "metadata"}` dicts with batch-job embeddings; returns counts."""
    version = production_version(settings)
    model = registry.load(settings.db_url, name=settings.model_name, version=version)
    model.check_embedder(embedder.id)
    cache_url = settings.db_url if settings.cache_embeddings else None

    def classify(todo: list[Post]) -> None:
        write_rows(settings.db_url, classify_batch(todo, embedder, model, cache_url=cache_url))

    return backfill_in_chunks(posts, settings=settings, version=version, chunk_size=chunk_size,
                              handle=classify, dry_run=dry_run, progress=progress, on_invalid=on_invalid)
