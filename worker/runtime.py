"""What a worker process holds: settings, its embedder and the model server.

Built once per process, lazily, so importing the tasks module stays cheap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from shared.embedders import Embedder, make_embedder
from shared.serving_status import ServingState, StatusReporter
from shared.settings import Settings
from worker import metrics
from worker.followers import BatchFollowers, make_followers
from worker.serving import ModelServer


@dataclass
class Runtime:
    settings: Settings
    embedder: Embedder
    models: ModelServer
    followers: BatchFollowers | None = None  # shadow scoring and drift sums after each batch


class ServingReport:
    """Told what the worker serves after each look at the alias: records it in Redis (`topicq models`),
    in topicq_model_info, and keeps it for the heartbeat."""

    def __init__(self, status: StatusReporter, embedder_id: str) -> None:
        self.status, self.embedder_id = status, embedder_id
        self.serving: str | None = None

    def __call__(self, state: ServingState) -> None:
        self.status(state)
        self.serving = state.serving
        if state.serving:
            name, _, version = state.serving.rpartition(":")
            if version.isdigit():
                metrics.serving(name, int(version), self.embedder_id)

    def clear(self) -> None:
        self.status.clear()


_runtime: Runtime | None = None
_lock = threading.Lock()


def build_runtime(settings: Settings, embedder: Embedder | None = None) -> Runtime:
    embedder = embedder or make_embedder(settings=settings)
    models = ModelServer(settings.db_url, name=settings.model_name, alias=settings.model_alias,
                         embedder_id=embedder.id, refresh_s=settings.model_refresh_s,
                         report=ServingReport(StatusReporter(settings.redis_url, settings.queue),
                                              embedder.id))
    metrics.time_rate_limits(embedder)
    return Runtime(settings=settings, embedder=embedder, models=models,
                   followers=make_followers(settings, embedder.id))


def get_runtime(settings: Settings) -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(settings)
        return _runtime
