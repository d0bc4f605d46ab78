"""The Celery application of the workers: the shared settings plus the two tasks.

`celery -A worker.app worker` or `topicq worker` run it. Producers do not import
it (shared/wire/producer.py needs only shared/wire/celery_config.py and shared/wire/protocol.py).
"""

from __future__ import annotations

from celery import Celery

from shared.settings import Settings, get_settings
from shared.wire.celery_config import celery_config


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("topicq", set_as_current=True)
    app.conf.update(celery_config(settings))
    from worker.tasks import register_tasks

    register_tasks(app, settings)
    return app


app = make_app()
