"""The worker process: Celery app and tasks, the classify pipeline, the served model, metrics and presence."""
