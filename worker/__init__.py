"""topicq workers: Celery app and tasks, the classify pipeline, enqueue client, backfill, results."""
