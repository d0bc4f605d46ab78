"""What a worker does with the transport's events (shared/wire/transport.py `event_hook`): count them in
its metrics, and record the posts of a dead letter `rejected` (shared/wire/dead_letters.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker import metrics
from worker.rejected_posts import record_rejected

if TYPE_CHECKING:
    from shared.wire.transport import TransportEvent


def handle(event: TransportEvent) -> None:
    if event.kind == "bad_stamp":
        metrics.bad_stamp()
    elif event.kind == "dead_letter":
        metrics.dead_letter()
        if event.post_ids:
            record_rejected(event.post_ids, event.reason)
