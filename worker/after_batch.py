"""What follows a batch once its production rows are written: its new embeddings stored in the
embedding cache, the challenger in shadow, the drift sums.

All reuse the batch's embeddings. Neither may cost the production rows: they
run after those are committed, and their failures are logged and counted.
A redelivered batch adds to the drift sums again: they are monitoring figures,
not a ledger.

In a worker they run on a thread of their own (`background`): a batch hands its
embeddings over once its rows are committed and returns, so its messages are
acknowledged and the next batch is embedding while the challenger's rows and
the sums are written. At most `FOLLOW_BEHIND` batches wait for them (a batch
that would be one more waits for room: a slow database slows the batches, it
never piles up memory); a stopping worker finishes them (`drain`, at exit). A
worker killed outright loses the sums and challenger rows of those batches
only, never a production row.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque

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


FOLLOW_BEHIND = 4  # batches that may wait for the followers' thread
DRAIN_AT_EXIT_S = 30.0


class AfterBatch:
    """What follows a batch once its rows are written: the challenger's rows and both versions' drift
    sums, from the batch's own embeddings; never at the production rows' cost. `background`: on a
    thread of its own, so the batch that hands them over does not wait for them."""

    def __init__(self, settings: Settings, shadow: ShadowScorer | None, *, background: bool = False) -> None:
        self.settings = settings
        self.shadow = shadow
        self.background = background
        self.failures = 0  # drift sums or shadow rows not written, since the worker started
        self._waiting: deque[list[EmbeddedBatch]] = deque()
        self._busy = 0  # handed over and not finished (waiting or being followed)
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def after_write(self, batches: list[EmbeddedBatch]) -> None:
        if not batches:
            return
        if not self.background:
            self._follow(batches)
            return
        with self._changed:
            self._start()
            while self._busy >= FOLLOW_BEHIND:
                self._changed.wait()
            self._waiting.append(batches)
            self._busy += 1
            self._changed.notify_all()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every batch handed over is followed; False when `timeout` ran out first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._busy == 0, timeout)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="topicq-after-batch", daemon=True)
            self._thread.start()
            atexit.register(self.drain, DRAIN_AT_EXIT_S)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._waiting))
                batches = self._waiting.popleft()
            try:
                self._follow(batches)
            except Exception:  # noqa: BLE001 - the thread must outlive any batch
                self.failures += 1
                log.exception("following a batch failed; its production rows are written")
            finally:
                with self._changed:
                    self._busy -= 1
                    self._changed.notify_all()

    def _follow(self, batches: list[EmbeddedBatch]) -> None:
        for batch in batches:
            batch.store_fresh()
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


def make_after_batch(settings: Settings, *, background: bool = False) -> AfterBatch:
    """The followers `settings` ask for (`background`: on a thread of their own). The challenger is
    matched with each batch's embedder, which a worker on EMBEDDER=auto may swap."""
    shadow = None
    if settings.shadow_alias and settings.shadow_alias != settings.model_alias:
        shadow = ShadowScorer(settings.db_url, name=settings.model_name, alias=settings.shadow_alias,
                              refresh_s=settings.model_refresh_s, review=ReviewPolicy.from_settings(settings))
    return AfterBatch(settings, shadow, background=background)
