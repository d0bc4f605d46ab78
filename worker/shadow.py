"""The challenger scored in shadow: SHADOW_ALIAS of MODEL_NAME classifies every batch too.

It reads the batch's embeddings (no second embed call) and its rows are written
under its own version, marked `shadow`, so production queries leave them out.
It follows its alias as the served model does (re-read every MODEL_REFRESH_S,
by the runtime's follower thread in a worker, posts or not: a batch does not
pay the challenger's load nor wait for a look).
A challenger is scored only on batches embedded with its own embedder (each
batch says which, and a worker on EMBEDDER=auto may swap it with production),
so one of another embedder, the served version itself, or an unset alias is
simply not scored. Whatever goes wrong with the challenger is logged and
counted, never raised: the production rows are written first and stay.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from shared.database.results import ResultRow, Status
from shared.errors import ModelError
from shared.improvement.review import ReviewPolicy, flag_row, review_flags
from shared.model import registry
from shared.model.store import TopicModel
from worker.embedded_batch import EmbeddedBatch

log = logging.getLogger(__name__)


class ShadowScorer:
    def __init__(self, db_url: str, *, name: str, alias: str, refresh_s: float,
                 review: ReviewPolicy | None = None) -> None:
        self.db_url, self.name, self.alias = db_url, name, alias
        self.review = review  # the challenger's rows are flagged by its own probabilities
        self.refresh_s = refresh_s
        self.failures = 0  # batches the challenger could not score, since the worker started
        self._model: TopicModel | None = None
        self._refused: int | None = None  # a version that cannot be followed, logged once
        self._mismatch: tuple[str, str] | None = None  # (challenger, batch embedder) logged once
        self._checked_at = float("-inf")
        self._looking = threading.Lock()  # one look at the alias at a time
        self.followed = False  # set when a follower thread re-reads the alias: batches then do not

    def current(self) -> TopicModel | None:
        """The challenger for the next batch, or None (no alias, or one this worker cannot follow)."""
        if not self.followed or self._checked_at == float("-inf"):  # the first look may be a batch's
            self._refresh(force=False)
        return self._model

    def refresh(self) -> None:
        """Look at the alias now and load a challenger it moved to (the follower's beat); raises when
        the database cannot be read (the challenger loaded before is kept)."""
        self._refresh(force=True)

    def _refresh(self, *, force: bool) -> None:
        with self._looking:
            now = time.monotonic()
            if not force and now - self._checked_at < self.refresh_s:
                return
            self._checked_at = now
            version = registry.resolve(self.db_url, name=self.name, alias=self.alias)
            if version is None:
                self._model = None
            elif (self._model is None or self._model.meta.version != version) and version != self._refused:
                self._model = self._load(version)

    def _load(self, version: int) -> TopicModel | None:
        try:
            model = registry.load(self.db_url, name=self.name, version=version)
        except ModelError as exc:
            self._refused = version
            log.error("not scoring %s:%s (%s) in shadow: %s", self.name, version, self.alias, exc)
            return None
        log.info("scoring %s in shadow (%s)", model.key, self.alias)
        return model

    def _reads(self, model: TopicModel, embedder_id: str) -> bool:
        """Whether the challenger was trained on `embedder_id`'s vectors; a mismatch is logged once."""
        try:
            model.check_embedder(embedder_id)
            return True
        except ModelError as exc:
            if self._mismatch != (model.key, embedder_id):
                self._mismatch = (model.key, embedder_id)
                log.error("not scoring %s (%s) in shadow: %s", model.key, self.alias, exc)
            return False

    def score(self, batch: EmbeddedBatch) -> list[ResultRow]:
        """The challenger's rows for the batch (none when there is no challenger); never raises."""
        try:
            model = self.current()
            if model is None or model.key == batch.model.key or not self._reads(model, batch.embedder_id):
                return []
            done = batch.done()
            texts = [batch.posts_text[i] for i in done]
            probabilities = model.classifier.predict_proba(batch.vectors[done], texts)
            labels = [str(label) for label in model.classifier.classes_]
            flags = review_flags(probabilities, batch.vectors[done], labels, model, self.review)
        except Exception as exc:  # noqa: BLE001 - the challenger must never cost a batch
            self.failures += 1
            log.error("shadow scoring failed (%d batches so far), production rows unaffected: %s",
                      self.failures, exc)
            return []
        rows = []
        position = {i: n for n, i in enumerate(done)}
        for i, served in enumerate(batch.rows):
            # The production row's own review verdict and kept text are not the challenger's.
            row = replace(served, model_version=model.meta.version, shadow=True, needs_review=False,
                          review_reason=None, margin=None, domain_score=None, text=None)
            if i in position:
                row.answer(probabilities[position[i]], labels)
                if flags is not None and self.review is not None:
                    flag_row(row, flags[position[i]], batch.posts_text[i], self.review)
            elif row.status != Status.REJECTED:
                continue
            rows.append(row)
        return rows
