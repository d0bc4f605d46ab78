"""Which model a worker serves: the alias (default `production`) of MODEL_NAME.

The alias is re-read at most every MODEL_REFRESH_S seconds; when it moves,
the new version is loaded beside the old one and swapped in between batches,
so no in-flight post is dropped and every row names the version that made it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from shared import registry
from shared.errors import DatabaseUnavailableError, ModelError
from shared.serving_status import ServingState
from shared.store import TopicModel

log = logging.getLogger(__name__)


class ModelServer:
    def __init__(self, db_url: str, *, name: str, alias: str, embedder_id: str,
                 refresh_s: float = 5.0, report: Callable[[ServingState], None] | None = None) -> None:
        self.db_url = db_url
        self.name = name
        self.alias = alias
        self.embedder_id = embedder_id
        self.refresh_s = refresh_s
        self.report = report  # told what is served (and refused) after each look at the alias
        self._model: TopicModel | None = None
        self._refusal: ServingState | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def _load(self, version: int) -> TopicModel:
        model = registry.load(self.db_url, name=self.name, version=version)
        model.check_embedder(self.embedder_id)
        return model

    def current(self) -> TopicModel:
        """The model to use for the next batch (loads or switches when the alias moved)."""
        with self._lock:
            now = time.monotonic()
            if self._model is not None and now - self._checked_at < self.refresh_s:
                return self._model
            try:
                version = registry.resolve(self.db_url, name=self.name, alias=self.alias)
            except DatabaseUnavailableError:  # keep serving what we have
                if self._model is not None:
                    return self._model
                raise
            self._checked_at = now
            if version is None:
                if self._model is not None:
                    return self._model
                raise ModelError(
                    f"no {self.alias!r} version of model {self.name!r}: train one with "
                    f"`topicq train ... --name {self.name} --promote`"
                )
            if self._model is None or self._model.meta.version != version:
                self._model = self._switch(version)
            if self._model.meta.version == version:
                self._refusal = None
            model, state = self._model, self._refusal or ServingState(serving=self._model.key)
        if self.report:  # outside the lock: a slow Redis must not hold up other batches
            self.report(state)
        return model

    def _switch(self, version: int) -> TopicModel:
        """`version` loaded; when it cannot be served, the current model, and why is logged once."""
        try:
            loaded = self._load(version)
        except ModelError as exc:
            if self._model is None:
                raise
            refused = f"{self.name}:{version}"
            if self._refusal is None or self._refusal.refused != refused:
                log.error("keeping %s: cannot switch to %s: %s", self._model.key, refused, exc)
                self._refusal = ServingState(serving=self._model.key, refused=refused, reason=str(exc),
                                             at=datetime.now(UTC).isoformat(timespec="seconds"))
            return self._model
        if self._model is not None:
            log.info("switching model %s -> %s", self._model.key, loaded.key)
        return loaded
