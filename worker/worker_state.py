"""What a worker process holds: settings, the served model (a version and its embedder), its presence
(worker/presence.py) and what follows each batch.

Built once per process, lazily, so importing the tasks module stays cheap.
With EMBEDDER=auto the worker embeds with what its production model was
trained with (a model trained on the torch encoder keeps its torch encoder
after the default changed), and when the alias moves to a version of another
embedder (e.g. another tuned encoder) it builds that one and swaps the pair
between batches, without a restart. A set EMBEDDER is used as it is, and a
model of another embedder is refused (worker/served_model.py). What names the
served pair (metrics, heartbeat, status) reads the worker's presence, which the
served model tells after each look at the alias.

A running worker re-reads its aliases (the served one and SHADOW_ALIAS) on a
follower thread (worker/alias_follower.py) every MODEL_REFRESH_S, whether posts arrive or not: an idle
worker's heartbeat, status and metrics name a promotion within MODEL_REFRESH_S
plus the load, and the first post after it does not pay the load. Looks and
loads run on that thread, never on Celery's event loop nor a batch's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from shared.errors import DatabaseUnavailableError, TopicqError
from shared.model import registry
from shared.model.embedders import Embedder, make_embedder, make_embedder_for
from shared.model.embedders.onnx import available_cores
from shared.model.threads import settle_classifier_threads
from shared.settings import Settings
from worker import metrics
from worker.after_batch import AfterBatch, make_after_batch
from worker.alias_follower import AliasFollower
from worker.heartbeat import Heartbeat
from worker.presence import Presence
from worker.served_model import EmbedderFor, ServedModel

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class WorkerState:
    settings: Settings
    models: ServedModel  # the served version and its embedder, swapped together
    presence: Presence  # what the worker is and serves, in Redis, the heartbeat and the metrics
    followers: AfterBatch | None = None  # shadow scoring and drift sums after each batch

    follower: AliasFollower | None = None  # re-reads the aliases while the worker runs

    @property
    def embedder(self) -> Embedder:
        """The embedder served now (warm-up, reports); a batch takes its own snapshot of the pair."""
        return self.models.embedder

    def follow_aliases(self) -> AliasFollower:
        """Start re-reading the aliases every MODEL_REFRESH_S on a thread of their own; from then on
        batches take what is loaded and never look themselves."""
        if self.follower is None:
            looks = {f"the {self.models.alias!r} alias": self.models.refresh}
            shadow = self.followers.shadow if self.followers is not None else None
            if shadow is not None:
                looks[f"the {shadow.alias!r} alias (shadow)"] = shadow.refresh
                shadow.followed = True
            self.models.followed = True
            self.follower = AliasFollower(looks, self.settings.model_refresh_s).start()
        return self.follower


_state: WorkerState | None = None
_lock = threading.Lock()


def served_version(settings: Settings) -> registry.VersionInfo | None:
    """The version MODEL_ALIAS names now (one lookup, one read of its row); None without one (or a
    database)."""
    try:
        version = registry.resolve(settings.db_url, name=settings.model_name, alias=settings.model_alias)
        if version is None:
            return None
        return registry.get_version(settings.db_url, name=settings.model_name, version=version)
    except TopicqError:
        return None  # the served model says why, batch by batch


def worker_embedder(settings: Settings) -> Embedder:
    """EMBEDDER=auto: the served model's embedder (the default one when there is none yet). A
    version's encoder is read from its directory when it keeps one (its tuned encoder, or its copy of
    the packaged one): also with a set EMBEDDER that produces the version's vectors."""
    return _embedder_of(settings, served_version(settings))


def _embedder_of(settings: Settings, served: registry.VersionInfo | None) -> Embedder:
    if settings.embedder == "auto":
        if served is not None:
            return make_embedder_for(served.embedder_id, settings, Path(served.path))
        return make_embedder(settings=settings)
    embedder = make_embedder(settings=settings)
    if served is not None and served.embedder_id == embedder.id:
        return make_embedder_for(served.embedder_id, settings, Path(served.path))
    return embedder


def version_embedder(settings: Settings) -> EmbedderFor:
    """Builds the embedder of a version the alias moved to (EMBEDDER=auto), timed like the first."""

    def build(embedder_id: str, directory: Path) -> Embedder:
        embedder = make_embedder_for(embedder_id, settings, directory)
        metrics.time_rate_limits(embedder)
        return embedder

    return build


def build_worker_state(settings: Settings, embedder: Embedder | None = None, *,
                       node: str = "") -> WorkerState:
    """`node`: Celery's name for this worker, which its presence records beside host:pid."""
    settle_classifier_threads(available_cores())
    auto = settings.embedder == "auto"
    # The version the alias names picks the embedder (EMBEDDER=auto) or its encoder file (a set EMBEDDER
    # of the same id); on auto it is also the first one served, without a second lookup.
    served = served_version(settings) if embedder is None else None
    first = served if auto else None
    embedder = embedder or _embedder_of(settings, served)
    presence = Presence(settings.redis_url, settings.queue, node=node)
    models = ServedModel(settings.db_url, name=settings.model_name, alias=settings.model_alias,
                         embedder=embedder, refresh_s=settings.model_refresh_s, report=presence.record,
                         embedder_for=version_embedder(settings) if auto else None, first=first)
    metrics.time_rate_limits(embedder)
    return WorkerState(settings=settings, models=models, presence=presence,
                       followers=make_after_batch(settings, background=True))


def get_worker_state(settings: Settings, *, node: str = "") -> WorkerState:
    global _state
    with _lock:
        if _state is None:
            _state = build_worker_state(settings, node=node)
        return _state


def wait_for_database(load: Callable[[], T], *, heartbeat: Heartbeat | None = None, first_s: float = 1.0,
                      max_s: float = 10.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """`load()` once the database can be used: while it raises DatabaseUnavailableError, wait (backoff
    from `first_s` doubling to `max_s`) and try again, as running workers hold their posts through an
    outage. A starting worker under a supervisor thus fills its slot as soon as the database is back,
    instead of exiting. The wait is logged once, with the reason, and the heartbeat says it (not
    ready: `topicq health` FAILs with the reason)."""
    wait, since = first_s, None
    while True:
        try:
            result = load()
        except DatabaseUnavailableError as exc:
            if since is None:
                since = time.monotonic()
                log.warning("waiting for the database before serving: %s; trying again every %g-%g s",
                            exc, first_s, max_s)
            if heartbeat is not None:
                heartbeat.waiting = f"for the database: {exc}"
                heartbeat.beat()
            sleep(wait)
            wait = min(wait * 2, max_s)
            continue
        if since is not None:
            log.info("the database answers after %.0f s of waiting; starting", time.monotonic() - since)
            if heartbeat is not None:
                heartbeat.remove()  # the running worker's own heartbeat takes over
        return result


def database_ready(settings: Settings) -> None:
    """Raises DatabaseUnavailableError while the database cannot be read (a cheap probe before loading)."""
    registry.resolve(settings.db_url, name=settings.model_name, alias=settings.model_alias)
