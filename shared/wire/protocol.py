"""The wire contract between producers and workers: task names, the message, the retry header.

A post travels as a Celery protocol-2 JSON message on the Redis list named by
QUEUE (default `topicq`): a producer in any language may LPUSH it by hand
(README, "Any language"; testkit/wire.py builds one with json and base64 only).

    topicq.classify        kwargs {"id", "text", "metadata"?}   one post (shared/wire/payload.py)
    topicq.classify_chunk  kwargs {"posts": [post, ...]}         a backfill chunk

What a well-formed message is, field by field, is checked in shared/wire/envelope.py.
"""

from __future__ import annotations

CLASSIFY_TASK = "topicq.classify"
CLASSIFY_CHUNK_TASK = "topicq.classify_chunk"
TASKS = frozenset({CLASSIFY_TASK, CLASSIFY_CHUNK_TASK})

# How often a post was delivered before: set by workers when they send it again, in the
# message headers, never in the payload (producers cannot count a post's retries for it).
ATTEMPT_HEADER = "topicq_attempt"
MAX_ATTEMPT_HEADER = 1000
# When a post sent again is due (epoch seconds), for waits longer than one countdown may be
# (worker/retry_policy.py): until then a worker passes the message on without processing it.
DUE_HEADER = "topicq_due"
# When the producer sent the post (epoch seconds, a number): the start of the end-to-end latency
# (worker/metrics.py). Kept when a worker sends the post again; a message without it (a raw LPUSH
# from another language) is counted apart, and one with a value that is not a recent time has it
# removed by the envelope check (shared/wire/envelope.py) rather than being refused.
SENT_AT_HEADER = "topicq_sent_at"
# A stamp is judged against the worker's clock: valid from MAX_STAMP_AGE_S back to MAX_CLOCK_SKEW_S
# ahead. A retried post keeps its first stamp, so the window back covers the longest retry chain
# (MAX_RETRIES waits of at most RETRY_MAX_S, plus waits out a database outage that spend no attempt)
# and a backlog left over a long weekend. Anything else (a monotonic clock's reading, milliseconds,
# a far-future year) is not a send time and would swamp the latency figures.
MAX_STAMP_AGE_S = 7 * 86400.0
MAX_CLOCK_SKEW_S = 300.0  # producers' clocks running ahead of the worker's
