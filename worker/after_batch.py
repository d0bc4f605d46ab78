"""What follows a batch once its production rows are written: the challenger in shadow, the drift sums.

Both reuse the batch's embeddings. Neither may cost the production rows: they
run after those are committed, and their failures are logged and counted.
A redelivered batch adds to the drift sums again: they are monitoring figures,
not a ledger.
"""

from __future__ import annotations

import logging

import numpy as np

from shared.database.results import ResultRow, Status, write_rows
from shared.improvement.drift_sums import BatchSums, add_sums
from shared.improvement.review import ReviewPolicy, count_flags
from shared.settings import Settings
from worker.embedded_batch import EmbeddedBatch
from worker.shadow import ShadowScorer

log = logging.getLogger(__name__)


def batch_sums(rows: list[ResultRow], vectors: np.ndarray) -> BatchSums:
    """The drift sums of `rows` (done ones count), `vectors[i]` being row i's embedding."""
    done = [i for i, row in enumerate(rows) if row.status == Status.DONE and row.label is not None]
    review, out_of_domain = count_flags([rows[i] for i in done])
    return BatchSums.of([str(rows[i].label) for i in done], [float(rows[i].score or 0.0) for i in done],
                        vectors[done] if done else np.zeros((0, vectors.shape[1])), review, out_of_domain)


class AfterBatch:
    """What follows a batch once its rows are written: the challenger's rows and both versions' drift
    sums, from the batch's own embeddings; never at the production rows' cost."""

    def __init__(self, settings: Settings, shadow: ShadowScorer | None) -> None:
        self.settings = settings
        self.shadow = shadow
        self.failures = 0  # drift sums or shadow rows not written, since the worker started

    def after_write(self, batches: list[EmbeddedBatch]) -> None:
        for batch in batches:
            self._record(batch.rows, batch)
            if self.shadow is None:
                continue
            rows = self.shadow.score(batch)
            if rows and self._write_shadow(rows):
                self._record(rows, batch)

    def _write_shadow(self, rows: list[ResultRow]) -> bool:
        try:
            write_rows(self.settings.db_url, rows)
            return True
        except Exception as exc:  # noqa: BLE001 - the production rows are already written
            self.failures += 1
            log.error("could not write %d shadow rows (%d failures so far): %s", len(rows), self.failures,
                      exc)
            return False

    def _record(self, rows: list[ResultRow], batch: EmbeddedBatch) -> None:
        if not rows:
            return
        try:
            # Shadow rows skip the refused texts: line each row up with its post's vector.
            index = {row.post_id: i for i, row in enumerate(batch.rows)}
            vectors = batch.vectors[[index[row.post_id] for row in rows]]
            add_sums(self.settings.db_url, model_name=rows[0].model_name, model_version=rows[0].model_version,
                     sums=batch_sums(rows, vectors), bucket_s=self.settings.drift_bucket_s)
        except Exception as exc:  # noqa: BLE001 - monitoring must never cost a batch
            self.failures += 1
            log.error("could not add a batch to the drift sums (%d failures so far): %s", self.failures, exc)


def make_after_batch(settings: Settings) -> AfterBatch:
    """The followers `settings` ask for. The challenger is matched with each batch's embedder, which
    a worker on EMBEDDER=auto may swap."""
    shadow = None
    if settings.shadow_alias and settings.shadow_alias != settings.model_alias:
        shadow = ShadowScorer(settings.db_url, name=settings.model_name, alias=settings.shadow_alias,
                              refresh_s=settings.model_refresh_s, review=ReviewPolicy.from_settings(settings))
    return AfterBatch(settings, shadow)
