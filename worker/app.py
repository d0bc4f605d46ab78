"""The Celery application: Redis broker, JSON only, late acks, nothing lost.

`celery -A worker.app worker` or `topicq worker` run it.
"""

from __future__ import annotations

from celery import Celery

from shared.settings import Settings, get_settings

CLASSIFY_TASK = "topicq.classify"
CLASSIFY_CHUNK_TASK = "topicq.classify_chunk"


def celery_config(settings: Settings) -> dict[str, object]:
    return {
        "broker_url": settings.redis_url,
        "result_backend": None,  # results live in the SQL database, not in Celery
        "task_ignore_result": True,
        # JSON only: a pickled message could run code in the worker.
        "task_serializer": "json",
        "accept_content": ["json"],
        # Acknowledge after the result row is committed; a killed worker's posts come back.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # The buffer must be able to fill: prefetch at least a batch (twice, to keep embedding busy).
        "worker_prefetch_multiplier": max(4, 2 * settings.batch_size),
        "task_default_queue": settings.queue,
        "task_routes": {"topicq.*": {"queue": settings.queue}},
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            # Longer than any buffering plus processing, else a slow batch is delivered twice.
            "visibility_timeout": settings.visibility_timeout_s,
            # Sweep often and in bulk for posts a killed worker left unacknowledged.
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
            "unacked_restore_limit": 10_000,
        },
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("topicq", set_as_current=True)
    app.conf.update(celery_config(settings))
    from worker.tasks import register_tasks

    register_tasks(app, settings)
    return app


app = make_app()
