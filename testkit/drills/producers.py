"""Drill 7: every producer, every standard option — each post answered under its own id, or refused.

Real clients send `topicq.classify` and `topicq.classify_chunk` to one worker:
stock Celery of another release than the project's (a virtualenv made at drill
time) and the project's own Celery, each with task protocols 2 and 1 and the
options users set by habit (priority 0/5/9, countdown, eta, expires in the
future and already past, custom headers); celery-node from npm with protocols
1 and 2; and a bare Redis client with hand-built messages (testkit/wire.py).

Every post must end with one row under the id it was sent with (done; a post
whose `expires` had passed when sent may be refused instead: rejected with a
dead letter, but never nothing), no row may carry an id nobody sent (a Celery
task id), and afterwards no key of the drill's own Redis holds a message
except the dead-letter list: nothing parked in `<queue>\\x06\\x16<priority>`,
`celery` or anywhere else no worker reads.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import redis_keys
from testkit import wire
from testkit.drills import producer_clients as clients
from testkit.drills.harness import DrillResult, Ledger, common_failures, ledger, start_stage, wait_for
from testkit.drills.services import PrivateRedis, ServiceUnavailable, fresh_database
from testkit.factories import make_posts

YEAR_S = 365 * 86400

# Label -> apply_async options (eta and expires relative to the send: producer_clients.py).
CLASSIFY_OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {}, "priority=0": {"priority": 0}, "priority=5": {"priority": 5}, "priority=9": {"priority": 9},
    "countdown=2s": {"countdown": 2}, "eta=+2s": {"eta_in_s": 2},
    "expires=+1h": {"expires_in_s": 3600}, "expires=-1m": {"expires_in_s": -60},
    "headers": {"headers": {"x-request-id": "req-1", "tenant": "acme"}},
}
CHUNK_OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {}, "priority=5": {"priority": 5}, "countdown=2s": {"countdown": 2},
    "expires=+1h": {"expires_in_s": 3600}, "expires=-1m": {"expires_in_s": -60},
}
# A post sent after its `expires`: the contract lets the worker answer it or refuse it, never drop it.
EXPIRED = "expires=-1m"


@dataclass
class ProducersSize:
    per_option: int = 1  # topicq.classify messages per client, protocol and option
    chunk_posts: int = 3  # posts per topicq.classify_chunk message
    celery_series: tuple[str, ...] = ("5.4",)  # the stock Celery releases sent with, besides the project's
    seed: int = 0


@dataclass
class Send:
    """One message as a producer sends it, and what must become of its posts."""

    client: str
    task: str
    kwargs: dict[str, Any]
    protocol: int = 2
    option: str = "plain"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.client} p{self.protocol} {self.task.removeprefix('topicq.')} {self.option}"

    @property
    def ids(self) -> list[str]:
        posts = self.kwargs.get("posts")
        return [p["id"] for p in posts] if posts is not None else [self.kwargs["id"]]

    @property
    def allowed(self) -> set[str]:
        return {"done", "rejected"} if self.option == EXPIRED else {"done"}

    def wire(self) -> dict[str, Any]:
        return {"task": self.task, "kwargs": self.kwargs, "protocol": self.protocol, "options": self.options}


class PostIds:
    """Posts with ids that say who sent them how (a lost one names its client and option)."""

    def __init__(self, seed: int) -> None:
        self.texts = [str(p["text"]) for p in make_posts(64, "text", seed)]
        self.count = 0

    def post(self, tag: str) -> dict[str, Any]:
        self.count += 1
        # Distinct texts: no post's embedding comes from the cache (a chunk's cost is per text).
        text = f"{self.texts[self.count % len(self.texts)]} n{self.count}"
        return {"id": f"{tag}#{self.count}", "text": text, "metadata": {"sent_by": tag}}


def celery_sends(client: str, posts: PostIds, size: ProducersSize) -> list[Send]:
    sends = []
    for protocol in (2, 1):
        for option, options in CLASSIFY_OPTIONS.items():
            for _ in range(size.per_option):
                post = posts.post(f"{client}-p{protocol}-{option}")
                sends.append(Send(client, wire.CLASSIFY, post, protocol, option, options))
        for option, options in CHUNK_OPTIONS.items():
            chunk = [posts.post(f"{client}-p{protocol}-chunk-{option}") for _ in range(size.chunk_posts)]
            sends.append(Send(client, wire.CLASSIFY_CHUNK, {"posts": chunk}, protocol, option, options))
    return sends


def node_sends(posts: PostIds, size: ProducersSize) -> list[Send]:
    sends = []
    for protocol in (2, 1):
        sends += [Send("celery-node", wire.CLASSIFY, posts.post(f"node-p{protocol}"), protocol)
                  for _ in range(size.per_option)]
        chunk = [posts.post(f"node-p{protocol}-chunk") for _ in range(size.chunk_posts)]
        sends.append(Send("celery-node", wire.CLASSIFY_CHUNK, {"posts": chunk}, protocol))
    return sends


def bare_messages(queue: str, posts: PostIds, size: ProducersSize) -> list[tuple[Send, str]]:
    """Hand-built protocol-2 messages: as the README documents them, and with a Celery-style priority."""
    out = []
    for _ in range(size.per_option):
        send = Send("redis", wire.CLASSIFY, posts.post("redis-plain"))
        out.append((send, wire.raw_message(send.task, send.kwargs, queue)))
        send = Send("redis", wire.CLASSIFY, posts.post("redis-priority9"), option="priority=9")
        message = wire.envelope(send.task, kwargs=send.kwargs, queue=queue)
        message["properties"]["priority"] = 9
        message["headers"]["x-request-id"] = "req-2"
        out.append((send, wire.encode(message)))
    chunk = [posts.post("redis-chunk") for _ in range(size.chunk_posts)]
    send = Send("redis", wire.CLASSIFY_CHUNK, {"posts": chunk})
    out.append((send, wire.raw_message(send.task, send.kwargs, queue)))
    return out


# --- what every producer drill checks ------------------------------------------------------------------

def stray_keys(redis_url: str, queue: str) -> dict[str, str]:
    """Every key of the drill's Redis that holds something other than the dead letters or bookkeeping:
    a message parked there is one no worker will read (or one still held, when a drill is over)."""
    import redis

    dead = f"{queue}.dead"
    out: dict[str, str] = {}
    with redis.Redis.from_url(redis_url) as client:
        for key in client.scan_iter(count=1000):
            name = key.decode("utf-8", "backslashreplace")
            kind = client.type(key).decode()
            bookkeeping = name.startswith(("_kombu.binding", redis_keys.PRESENCE_PREFIX))  # no message
            if name == dead or bookkeeping or kind in ("string", "none"):
                continue
            length = {"list": client.llen, "hash": client.hlen, "zset": client.zcard, "set": client.scard}
            size = length[kind](key) if kind in length else "?"
            out[name.encode("unicode_escape").decode()] = f"{kind} of {size}"
    return out


def left_in_redis(strays: dict[str, str]) -> dict[str, int]:
    """`stray_keys` as counts, for bench/drills.py's "left in Redis" column."""
    return {name: int(what.rsplit(" ", 1)[-1]) if what[-1].isdigit() else 1 for name, what in strays.items()}


def describe_keys(keys: dict[str, str]) -> str:
    return ", ".join(f"{name} ({what})" for name, what in sorted(keys.items()))


def wait_for_no_strays(redis_url: str, queue: str, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    strays = stray_keys(redis_url, queue)
    while strays and time.monotonic() < deadline:
        time.sleep(0.5)
        strays = stray_keys(redis_url, queue)
    return strays


def dead_letters(redis_url: str, queue: str) -> list[dict[str, Any]]:
    import redis

    with redis.Redis.from_url(redis_url) as client:
        return [json.loads(entry) for entry in client.lrange(f"{queue}.dead", 0, -1)]


def identity_failures(book: Ledger, sent_ids: set[str], task_ids: set[str],
                      letters: list[dict[str, Any]]) -> list[str]:
    """Rows and dead letters must name the posts' own ids: never a task id, never an id nobody sent."""
    failures = []
    unsent = sorted(set(book.by_id) - sent_ids)
    if unsent:
        tasks = sum(i in task_ids for i in unsent)
        failures.append(f"{len(unsent)} rows under ids nobody sent ({tasks} of them Celery task ids), "
                        f"e.g. {unsent[0]!r} ({book.by_id[unsent[0]]})")
    named = [i for letter in letters for i in letter.get("post_ids") or []]
    foreign = [i for i in named if i not in sent_ids]
    if foreign:
        failures.append(f"{len(foreign)} dead letters name ids nobody sent ({sum(i in task_ids for i in foreign)}"
                        f" of them Celery task ids), e.g. {foreign[0]!r}")
    return failures


def outcome_failures(sends: list[Send], book: Ledger, letters: list[dict[str, Any]]) -> list[str]:
    """Per client and option: posts with no row, with a status the contract does not allow, and
    refused posts without their dead letter."""
    lost: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    undead: Counter[str] = Counter()
    dead_ids = {i for letter in letters for i in letter.get("post_ids") or []}
    for send in sends:
        for post_id in send.ids:
            status = book.by_id.get(post_id)
            if status is None:
                lost[send.label] += 1
            elif status not in send.allowed:
                wrong[f"{send.label}: {status}"] += 1
            elif status == "rejected" and post_id not in dead_ids:
                undead[send.label] += 1
    return ([f"no row: {label} x{n}" for label, n in sorted(lost.items())]
            + [f"wrong status: {label} x{n}" for label, n in sorted(wrong.items())]
            + [f"rejected without a dead letter: {label} x{n}" for label, n in sorted(undead.items())])


# --- the drill -----------------------------------------------------------------------------------------

def send_all(sends_by_client: dict[str, Any], broker_url: str, queue: str,
             workdir: Path) -> tuple[list[Send], set[str], list[str], list[str], list[str]]:
    """Send every client's messages: (sent, task ids, versions, skipped parts, send failures)."""
    sent: list[Send] = []
    task_ids: set[str] = set()
    versions, skipped, failed = [], [], []
    for client, (make_sender, sends) in sends_by_client.items():
        try:
            sender = make_sender()
            version, ids = sender(broker_url, queue, [s.wire() for s in sends]) if sends else ("", [])
        except ServiceUnavailable as exc:
            skipped.append(f"{client}: {exc}")
            continue
        except clients.SendFailed as exc:
            failed.append(f"{client}: {exc}")
            continue
        sent += sends
        task_ids |= set(ids)
        versions.append(f"{client} {version}")
    return sent, task_ids, versions, skipped, failed


def run(size: ProducersSize, workdir: Path) -> DrillResult:
    posts = PostIds(size.seed)
    with PrivateRedis(aof=False) as broker, fresh_database() as db_url:
        stage = start_stage(db_url=db_url, redis_url=broker.url(), workdir=workdir, log_name="producers.log")
        settings, worker = stage.settings, stage.worker
        queue, url = settings.queue, settings.redis_url

        def celery_sender(python_of: Any) -> Any:
            def make() -> Any:
                python = python_of()  # may build the virtualenv: ServiceUnavailable skips this client
                return lambda b, q, s: clients.send_celery(python, b, q, s, workdir)
            return make

        def node_sender() -> Any:
            folder = clients.node_modules()
            return lambda b, q, s: clients.send_celery_node(folder, b, q, s)

        by_client = {
            f"celery-{series}": (celery_sender(lambda series=series: clients.celery_python(series)),
                                 celery_sends(f"celery-{series}", posts, size))
            for series in size.celery_series
        }
        by_client |= {
            "celery-project": (celery_sender(clients.project_python), celery_sends("celery-project", posts, size)),
            "celery-node": (node_sender, node_sends(posts, size)),
        }
        bare = bare_messages(queue, posts, size)
        started = time.time()
        try:
            sent, task_ids, versions, skipped, failed = send_all(by_client, url, queue, workdir)
            clients.send_bare(url, queue, [entry for _, entry in bare])
            sent += [send for send, _ in bare]
            sent_ids = {i for send in sent for i in send.ids}
            wait_for(db_url, len(sent_ids), timeout=60 + len(sent_ids) / 10, stall_s=20)
            strays = wait_for_no_strays(url, queue, timeout=12)
            alive = worker.alive()
        finally:
            worker.stop()
        book = ledger(db_url, sent_ids)
        letters = dead_letters(url, queue)
    failures = common_failures(alive=alive, left=None, errors=failed, log=worker.all_logs())
    failures += outcome_failures(sent, book, letters)
    failures += identity_failures(book, sent_ids, task_ids, letters)
    if strays:
        failures.append(f"messages left where no worker reads: {describe_keys(strays)}")
    notes = [f"producers: {', '.join(versions + ['redis (hand-built)'])}",
             f"{len(sent)} messages, {len(sent_ids)} posts; {len(letters)} dead letters; {len(task_ids)} task ids",
             *[f"skipped {part}" for part in skipped], *failed]
    return DrillResult("producers", len(sent_ids), f"{len(sent)} messages from {len(versions) + 1} producers",
                       len(book.lost), book.duplicates, book.reprocessed, book.wall_since(started),
                       book.statuses, notes, failures=failures,
                       extra={"skipped": skipped, "strays": strays, "dead_letters": len(letters),
                              "left": left_in_redis(strays),
                              "alive": alive, "versions": versions})
