"""The Celery settings producers and workers share: Redis broker, JSON only, late acks, nothing lost.

Importing this module loads Celery's configuration only: a producer needs
nothing of the worker's pipeline, models or embedders.
"""

from __future__ import annotations

import math
from urllib.parse import urlparse

from shared.settings import Settings
from shared.wire.protocol import TASKS

# A few ms of latency per post, against BATCH_WAIT_S a batch waits anyway.
TAKE_PAUSE_S = 0.02


def publish_retry_policy(total_s: float) -> dict[str, float | int]:
    """Retry a send for about `total_s`: waits of 0, 0.5, 1 and 1.5 s (3 s in all), then 2 s each."""
    retries = 4 + math.ceil(max(0.0, total_s - 3.0) / 2.0)
    return {"max_retries": retries, "interval_start": 0, "interval_step": 0.5, "interval_max": 2.0}


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
        # A pop that survives a broker crash (see shared/wire/transport.py); plain redis:// only.
        "broker_transport": ("shared.wire.transport:Transport"
                             if urlparse(settings.redis_url).scheme == "redis" else None),
        "broker_connection_retry_on_startup": True,
        # Celery's default gives up a send after ~0.6 s: a Redis restart would fail producers.
        "task_publish_retry": True,
        "task_publish_retry_policy": publish_retry_policy(settings.broker_retry_s),
        "broker_transport_options": {
            # Longer than any buffering plus processing, else a slow batch is delivered twice.
            "visibility_timeout": settings.visibility_timeout_s,
            # Sweep often and in bulk for posts a killed worker left unacknowledged.
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
            "unacked_restore_limit": 10_000,
            # A worker killed during a sweep leaves the sweep lock behind; kombu's 300 s
            # default would then hold back every redelivery for five minutes.
            "unacked_mutex_expire": 30,
            # One key per queue (no priority sub-queues), so the worker waits on it with BLMOVE.
            "priority_steps": [0],
            # After a read that drained the queue, wait this long so the next read takes several
            # messages: posts sent one by one cost one wake-up per read, not one each.
            "take_pause_s": TAKE_PAUSE_S,
            # Anything on the list that is not a well-formed message for these tasks goes to
            # `<queue>.dead` (shared/wire/transport.py); posts with a usable id get a `rejected` row.
            "accepted_tasks": sorted(TASKS),
            # Only topicq's queue: Celery's own lists (pidbox replies) carry other messages.
            "checked_queues": [settings.queue],
            # A message due later waits in `<queue><sep>delayed`, not in a prefetch slot.
            "max_delay_s": settings.max_delay_s,
            # Dead letters and bad send stamps: counted, and the dead letters' posts recorded `rejected`.
            "event_hook": "worker.transport_events:handle",
            "dead_letter_max": settings.dead_letter_max,
            "dead_letter_max_bytes": settings.dead_letter_max_bytes,
        },
        "worker_hijack_root_logger": False,
        # No remote control: anyone who can publish to Redis could otherwise send `shutdown` or
        # `cancel_consumer` (a worker alive, heartbeat fresh, taking nothing). `topicq status`,
        # `topicq health` and the metrics watch the workers; SIGTERM stops one.
        "worker_enable_remote_control": False,
        # Flower's task view (TASK_EVENTS); worker/metrics.py covers throughput, failures, latency.
        "worker_send_task_events": settings.task_events,
    }
