"""What a worker process holds: settings, its embedder and the model server.

Built once per process, lazily, so importing the tasks module stays cheap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from shared.embedders import Embedder, make_embedder
from shared.serving_status import StatusReporter
from shared.settings import Settings
from worker.followers import BatchFollowers, make_followers
from worker.serving import ModelServer


@dataclass
class Runtime:
    settings: Settings
    embedder: Embedder
    models: ModelServer
    followers: BatchFollowers | None = None  # shadow scoring and drift sums after each batch


_runtime: Runtime | None = None
_lock = threading.Lock()


def build_runtime(settings: Settings, embedder: Embedder | None = None) -> Runtime:
    embedder = embedder or make_embedder(settings=settings)
    models = ModelServer(settings.db_url, name=settings.model_name, alias=settings.model_alias,
                         embedder_id=embedder.id, refresh_s=settings.model_refresh_s,
                         report=StatusReporter(settings.redis_url, settings.queue))
    return Runtime(settings=settings, embedder=embedder, models=models,
                   followers=make_followers(settings, embedder.id))


def get_runtime(settings: Settings) -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(settings)
        return _runtime
