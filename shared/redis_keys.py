"""Every Redis key topicq reads or writes, and what it holds: the one place they are spelled.

    key (S = kombu's separator \x06\x16)  type    holds
    <queue>                    list        messages ready to take (LPUSH in, taken at the right)
    <queue>S<n>, n = 1..9      list        a stock Celery producer's messages sent with priority=n;
                                           the transport's sweep moves them onto <queue>
    <queue>Sinflight           list        taken (BLMOVE), not yet recorded unacknowledged
    <queue>SinflightSseen      hash        sha1 of an in-flight entry -> when the sweep first saw it
    <queue>Sdelayed            sorted set  messages due later (eta, countdown), scored by due time
    unacked                    hash        delivery tag -> [message, exchange, routing key] (kombu's,
                                           shared by every queue of the db)
    unacked_index              sorted set  delivery tag -> when last renewed (kombu's)
    unacked_mutex              string      kombu's lock for its restore sweep
    _kombu.binding.<queue>     set         kombu's routing table
    <queue>.dead               list        dead letters: JSON records with the message whole
    <queue>.dead.pending       list        `rejected` rows of dead letters waiting for the database
    <queue>.dead.resent        hash        sha1 of a message -> times re-sent (topicq dead-letters)
    topicq:worker:<q>:<w>      hash        what worker <w> (host:pid) of queue <q> is and serves:
                                           worker, queue, node, serving, embedder, refused, reason,
                                           at; figures (JSON, its recent counters, metrics on).
                                           TTL 10 min; figures older than 30 s not shown
    topicq:ratelimit:{<name>}:log, :totals, :pause   the Gemini rate limit shared by workers

docs/architecture.md shows the same table.
"""

from __future__ import annotations

SEP = "\x06\x16"  # kombu's Channel.sep, between a queue's name and its sub-keys
PRIORITY_LEVELS = range(1, 10)  # kombu's priority sub-lists; level 0 is the queue's own list
INFLIGHT_SUFFIX = "inflight"
DELAYED_SUFFIX = "delayed"
UNACKED = "unacked"  # kombu's default `unacked_key`, which topicq keeps
UNACKED_INDEX = "unacked_index"
DEAD_SUFFIX = ".dead"
PRESENCE_PREFIX = "topicq:worker:"
RATELIMIT_PREFIX = "topicq:ratelimit:"


def priority_key(queue: str, level: int, sep: str = SEP) -> str:
    return f"{queue}{sep}{level}" if level else queue


def priority_keys(queue: str, sep: str = SEP) -> list[str]:
    return [priority_key(queue, level, sep) for level in PRIORITY_LEVELS]


def ready_keys(queue: str) -> list[str]:
    """Every list a message waits on before a worker takes it, the queue's own first."""
    return [queue, *priority_keys(queue)]


def inflight_key(queue: str, sep: str = SEP) -> str:
    return f"{queue}{sep}{INFLIGHT_SUFFIX}"


def delayed_key(queue: str, sep: str = SEP) -> str:
    return f"{queue}{sep}{DELAYED_SUFFIX}"


def dead_letter_key(queue: str) -> str:
    return f"{queue}{DEAD_SUFFIX}"


def pending_rejections_key(queue: str) -> str:
    return f"{queue}{DEAD_SUFFIX}.pending"


def presence_key(queue: str, worker: str) -> str:
    return f"{PRESENCE_PREFIX}{queue}:{worker}"


def resent_key(queue: str) -> str:
    return f"{queue}{DEAD_SUFFIX}.resent"
