"""The challenger scored in shadow: SHADOW_ALIAS of MODEL_NAME classifies every batch too.

It reads the batch's embeddings (no second embed call) and its rows are written
under its own version, marked `shadow`, so production queries leave them out.
It follows its alias as the served model does (re-read every MODEL_REFRESH_S).
A version of another embedder, the served version itself, or an unset alias is
simply not followed. Whatever goes wrong with the challenger is logged and
counted, never raised: the production rows are written first and stay.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from shared import registry
from shared.errors import ModelError
from shared.results import ResultRow, Status
from shared.store import LoadedModel
from worker.embedded import EmbeddedBatch
from worker.serving import check_compatible

log = logging.getLogger(__name__)


class ShadowScorer:
    def __init__(self, db_url: str, *, name: str, alias: str, embedder_id: str, refresh_s: float) -> None:
        self.db_url, self.name, self.alias = db_url, name, alias
        self.embedder_id, self.refresh_s = embedder_id, refresh_s
        self.failures = 0  # batches the challenger could not score, since the worker started
        self._model: LoadedModel | None = None
        self._refused: int | None = None  # a version that cannot be followed, logged once
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def current(self) -> LoadedModel | None:
        """The challenger for the next batch, or None (no alias, or one this worker cannot follow)."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at < self.refresh_s:
                return self._model
            self._checked_at = now
            version = registry.resolve(self.db_url, name=self.name, alias=self.alias)
            if version is None:
                self._model = None
            elif (self._model is None or self._model.meta.version != version) and version != self._refused:
                self._model = self._load(version)
            return self._model

    def _load(self, version: int) -> LoadedModel | None:
        try:
            model = registry.load(self.db_url, name=self.name, version=version)
            check_compatible(model, self.embedder_id)
        except ModelError as exc:
            self._refused = version
            log.error("not scoring %s:%s (%s) in shadow: %s", self.name, version, self.alias, exc)
            return None
        log.info("scoring %s in shadow (%s)", model.key, self.alias)
        return model

    def score(self, batch: EmbeddedBatch) -> list[ResultRow]:
        """The challenger's rows for the batch (none when there is no challenger); never raises."""
        try:
            model = self.current()
            if model is None or model.key == batch.model.key:
                return []
            done = batch.done()
            texts = [batch.texts[i] for i in done]
            probabilities = model.classifier.predict_proba(batch.vectors[done], texts)
        except Exception as exc:  # noqa: BLE001 - the challenger must never cost a batch
            self.failures += 1
            log.error("shadow scoring failed (%d batches so far), production rows unaffected: %s",
                      self.failures, exc)
            return []
        labels = [str(label) for label in model.classifier.classes_]
        rows = []
        by_index = dict(zip(done, probabilities, strict=True))
        for i, served in enumerate(batch.rows):
            row = replace(served, model_version=model.meta.version, shadow=True)
            if i in by_index:
                p = by_index[i]
                best = int(p.argmax())
                row.label, row.score = labels[best], float(p[best])
                row.scores = dict(zip(labels, map(float, p), strict=True))
            elif row.status != Status.REJECTED:
                continue
            rows.append(row)
        return rows
