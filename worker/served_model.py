"""Which model a worker serves, and the embedder it serves it with: the alias (default `production`)
of MODEL_NAME and the embedder that version was trained with.

The alias is re-read every MODEL_REFRESH_S seconds; when it moves, the new
version is loaded beside the old one and swapped in between batches, so no
in-flight post is dropped and every row names the version that made it. In a
worker the alias follower's thread re-reads it (`refresh`), posts or not, so
an idle worker names a promotion within MODEL_REFRESH_S and its next batch does
not pay the load; without one (`followed` unset), batches re-read it when due.
A batch never waits for a look another thread is making: it takes the pair
served until the new one is swapped in.

One look at the alias is one lookup, and a load reads the version's row once;
a worker on EMBEDDER=auto hands over the version it looked up to pick its first
embedder (`first`), so its start looks the alias up once too.

A batch takes one `snapshot()`: a version and its embedder, never one without
the other. A served model given `embedder_for` (a worker on EMBEDDER=auto) follows the
alias to a version of another embedder: it builds that version's embedder
(e.g. the tuned encoder in its directory) beside the old pair and swaps the
pair. Without it (a set EMBEDDER), such a version is refused. A version that
cannot be served, or whose embedder cannot be built, is refused: the old pair
is kept, the refusal reported and logged once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from shared.errors import ConfigError, DatabaseUnavailableError, ModelError, TransientError
from shared.model import registry
from shared.model.embedders.base import Embedder
from shared.model.store import TopicModel
from worker.presence import WorkerPresence

log = logging.getLogger(__name__)

# Builds the embedder a version was trained with: (its embedder id, its directory) -> embedder.
EmbedderFor = Callable[[str, Path], Embedder]


@dataclass(frozen=True)
class ModelAndEmbedder:
    """What one batch is embedded and classified with: a version and the embedder it was trained with."""

    model: TopicModel
    embedder: Embedder


def warm_up(embedder: Embedder) -> None:
    """Load the weights (or check Gemini's key) now, so a broken embedder is refused, not a batch."""
    check_access = getattr(embedder, "check_access", None)
    if check_access is not None:
        check_access()
    else:
        embedder.embed(["topicq warm-up"])


class ServedModel:
    def __init__(self, db_url: str, *, name: str, alias: str, embedder: Embedder,
                 embedder_for: EmbedderFor | None = None, refresh_s: float = 5.0,
                 report: Callable[[WorkerPresence], None] | None = None,
                 first: registry.VersionInfo | None = None) -> None:
        """`embedder`: what the first version is served with; `embedder_for`: builds another version's
        embedder, to follow it (EMBEDDER=auto); `first`: the version the alias named when `embedder`
        was picked for it, loaded first without looking the alias up again."""
        self.db_url = db_url
        self.name = name
        self.alias = alias
        self.embedder_for = embedder_for
        self.refresh_s = refresh_s
        self.report = report  # told what is served (and refused) after each look at the alias
        self._embedder = embedder
        self._model: TopicModel | None = None
        self._first = first
        self._refusal: WorkerPresence | None = None  # what the alias names that cannot be served
        self._checked_at = float("-inf")
        self._lock = threading.Lock()  # held to swap or take the pair: never during a look
        self._looking = threading.Lock()  # one look at the alias at a time
        self.followed = False  # set when a follower thread re-reads the alias: batches then do not

    @property
    def embedder(self) -> Embedder:
        """The embedder of the pair served now (before the first load: the one given)."""
        return self._embedder

    @property
    def embedder_id(self) -> str:
        """The id of the embedder served now: metrics, heartbeat and status name it."""
        return self._embedder.id

    def _load(self, info: registry.VersionInfo) -> ModelAndEmbedder:
        model = registry.load_version(info)
        wanted = model.meta.embedder_id
        if wanted == self._embedder.id or self.embedder_for is None:
            model.check_embedder(self._embedder.id)
            return ModelAndEmbedder(model, self._embedder)
        embedder = self.embedder_for(wanted, Path(info.path))
        if embedder.id != wanted:  # e.g. a kind built with other options: its vectors differ
            raise ModelError(f"model {model.key} needs embedder {wanted!r}; the one built here is "
                             f"{embedder.id!r}")
        try:
            warm_up(embedder)
        except TransientError as exc:  # refused for now: tried again at the next look at the alias
            raise ModelError(f"embedder {wanted!r} of {model.key} cannot be reached: {exc}") from None
        return ModelAndEmbedder(model, embedder)

    def current(self) -> TopicModel:
        """The model of the next batch's pair, for callers that only name the version."""
        return self.snapshot().model

    def snapshot(self) -> ModelAndEmbedder:
        """The pair to use for the next batch (the first load, or a look when due and not followed)."""
        if self._model is None:
            self._refresh(force=False, wait=True)  # raises when there is nothing to serve
        elif not self.followed:
            self._refresh(force=False, wait=False)
        with self._lock:
            assert self._model is not None
            return ModelAndEmbedder(self._model, self._embedder)

    def refresh(self) -> None:
        """Look at the alias now and load or switch when it moved (the follower's beat, off the batches'
        threads); nothing before the first version is served, which the worker's start loads."""
        if self._model is not None:
            self._refresh(force=True, wait=True)

    def _refresh(self, *, force: bool, wait: bool) -> None:
        """One look at the alias (`wait`: behind one under way, else skipped), then report it."""
        if not self._looking.acquire(blocking=wait):
            return
        try:
            state = self._look(force)
        finally:
            self._looking.release()
        if state is not None and self.report:  # outside the locks: a slow Redis must not hold up a batch
            self.report(state)

    def _look(self, force: bool) -> WorkerPresence | None:
        """Look at the alias when due (`force`: now), and load or switch when it moved: what is served
        (and refused) to report, or None when the current pair is kept with nothing to report (too soon
        for a look, the database down, or the alias naming no version)."""
        now = time.monotonic()
        if not force and self._model is not None and now - self._checked_at < self.refresh_s:
            return None
        first, self._first = self._first, None  # given only before the first load
        try:
            version = first.version if first else registry.resolve(self.db_url, name=self.name,
                                                                     alias=self.alias)
        except DatabaseUnavailableError:  # keep serving what we have
            if self._model is not None:
                return None
            raise
        self._checked_at = now
        if version is None:
            if self._model is not None:
                return None
            raise ModelError(
                f"no {self.alias!r} version of model {self.name!r}: train one with "
                f"`topicq train ... --name {self.name} --promote`"
            )
        if self._model is None or self._model.meta.version != version:
            self._switch(version, first)
        assert self._model is not None  # _switch raises when there is nothing to keep
        if self._model.meta.version == version:
            self._refusal = None
        return self._refusal or WorkerPresence(serving=self._model.key, embedder=self._embedder.id)

    def _switch(self, version: int, info: registry.VersionInfo | None = None) -> None:
        """Serve `version` (its row: `info`, else read now) with its embedder; when either cannot be,
        keep the current pair, and why is logged once."""
        try:
            loaded = self._load(info or registry.get_version(self.db_url, name=self.name, version=version))
        except (ModelError, ConfigError) as exc:  # ConfigError: e.g. no Gemini key for its embedder
            if self._model is None:
                raise
            refused = f"{self.name}:{version}"
            if self._refusal is None or self._refusal.refused != refused:
                log.error("keeping %s: cannot switch to %s: %s", self._model.key, refused, exc)
                self._refusal = WorkerPresence(serving=self._model.key, embedder=self._embedder.id,
                                               refused=refused, reason=str(exc),
                                               at=datetime.now(UTC).isoformat(timespec="seconds"))
            return
        if self._model is not None:
            log.info("switching model %s -> %s", self._model.key, loaded.model.key)
        if loaded.embedder is not self._embedder:
            log.info("switching embedder %s -> %s", self._embedder.id, loaded.embedder.id)
        with self._lock:  # loaded and warmed up above: batches wait only for the swap itself
            # The old embedder is dropped, not closed: a batch may still be embedding with it.
            self._embedder, self._model = loaded.embedder, loaded.model
