"""The producers drill's field cases: what real producers sent that a worker lost, held or did twice.

    delays        2 workers; messages with an eta a year out sent ahead of good posts: the good posts
                  are answered within a minute, the far ones refused (rejected row + dead letter);
                  a short countdown and a near eta are answered once their time has come
    shared_tag    posts sharing one `properties.delivery_tag`, their worker SIGKILLed while holding
                  them and restarted: every post answered
    foreign_route `delivery_info` naming another routing key or an unknown exchange, same SIGKILL:
                  every post answered, nothing moved to another list
    big_chunk     one classify_chunk whose whole takes longer than the visibility timeout (an embedder
                  paid per text): every post done once (reprocessed 0), the worker cutting the chunk
                  into MAX_CHUNK_POSTS pieces

Each returns a DrillResult; lost / duplicates / reprocessed come from the ledger, and the case's own
checks are in `failures`.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from shared.database.connection import session_scope
from testkit import wire
from testkit.drills import producer_clients as clients
from testkit.drills.harness import (
    DrillResult,
    base_env,
    common_failures,
    ledger,
    settings_for,
    start_stage,
    wait_for,
)
from testkit.drills.producers import (
    YEAR_S,
    PostIds,
    dead_letters,
    describe_keys,
    identity_failures,
    left_in_redis,
    wait_for_no_strays,
)
from testkit.drills.services import PrivateRedis, fresh_database
from testkit.fake_gemini import FakeGemini
from testkit.worker_process import WorkerProcess, count_rows


def first_writes(db_url: str) -> dict[str, float]:
    """Post id -> epoch seconds of its first committed write (the ledger's)."""
    with session_scope(db_url) as session:
        rows = session.execute(text(
            "SELECT post_id, extract(epoch FROM min(at)) FROM drill_writes GROUP BY post_id")).all()
    return {post_id: float(at) for post_id, at in rows}


def statuses_of(db_url: str, ids: list[str]) -> dict[str, str]:
    with session_scope(db_url) as session:
        rows = session.execute(text("SELECT post_id, status FROM results WHERE post_id = ANY(:ids)"),
                               {"ids": ids}).all()
    return {post_id: status for post_id, status in rows}


# --- delays: far eta, short countdown, near eta --------------------------------------------------------

@dataclass
class DelaySize:
    far: int = 50  # eta a year out: longer than MAX_DELAY_S, so refused
    good: int = 100  # plain posts sent right after them
    short: int = 2  # each: countdown 3 s, and eta 4 s out
    workers: int = 2
    # Prefetch is 2 x BATCH_SIZE messages a worker: the far ones outnumber the fleet's slots.
    batch_size: int = 8
    answer_within_s: float = 60.0  # the good posts' promise
    max_delay_s: int = 86_400
    seed: int = 0


def delays(size: DelaySize, workdir: Path) -> DrillResult:
    posts = PostIds(size.seed)
    far = [posts.post("far-eta") for _ in range(size.far)]
    good = [posts.post("good") for _ in range(size.good)]
    countdown = [posts.post("countdown=3s") for _ in range(size.short)]
    near = [posts.post("eta=+4s") for _ in range(size.short)]
    sends = ([{"task": wire.CLASSIFY, "kwargs": p, "protocol": 2, "options": {"eta_in_s": YEAR_S}} for p in far]
             + [{"task": wire.CLASSIFY, "kwargs": p, "protocol": 2, "options": {}} for p in good]
             + [{"task": wire.CLASSIFY, "kwargs": p, "protocol": 2, "options": {"countdown": 3}} for p in countdown]
             + [{"task": wire.CLASSIFY, "kwargs": p, "protocol": 2, "options": {"eta_in_s": 4}} for p in near])
    all_ids = [p["id"] for p in far + good + countdown + near]
    with PrivateRedis(aof=False) as broker, fresh_database() as db_url:
        stage = start_stage(db_url=db_url, redis_url=broker.url(), workdir=workdir, log_name="delays-1.log",
                            MAX_DELAY_S=str(size.max_delay_s), BATCH_SIZE=str(size.batch_size))
        settings, workers = stage.settings, [stage.worker]
        workers += [WorkerProcess(stage.env, workdir / f"delays-{n}.log").start() for n in range(2, size.workers + 1)]
        try:
            sent_at = time.time()
            _, task_ids = clients.send_celery(clients.project_python(), settings.redis_url, settings.queue,
                                              sends, workdir)
            good_ids = [p["id"] for p in good]
            deadline = time.monotonic() + size.answer_within_s
            while time.monotonic() < deadline and \
                    sum(s == "done" for s in statuses_of(db_url, good_ids).values()) < len(good_ids):
                time.sleep(0.5)
            good_in_time = sum(s == "done" for s in statuses_of(db_url, good_ids).values())
            wait_for(db_url, len(all_ids), timeout=30, stall_s=12)
            strays = wait_for_no_strays(settings.redis_url, settings.queue, timeout=10)
            alive = all(w.alive() for w in workers)
        finally:
            for worker in workers:
                worker.stop()
        book = ledger(db_url, all_ids)
        written = first_writes(db_url)
        letters = dead_letters(settings.redis_url, settings.queue)
    far_ids = {p["id"] for p in far}
    far_rejected = sum(book.by_id.get(i) == "rejected" for i in far_ids)
    far_dead = len(far_ids & {i for letter in letters for i in letter.get("post_ids") or []})
    early = [p["id"] for p, wait in [(p, 3.0) for p in countdown] + [(p, 4.0) for p in near]
             if p["id"] in written and written[p["id"]] < sent_at + wait - 0.5]
    short_done = sum(book.by_id.get(p["id"]) == "done" for p in countdown + near)
    log = "\n".join(w.all_logs() for w in workers)
    failures = common_failures(alive=alive, left=None, errors=[], log=log)
    if good_in_time < size.good:
        failures.append(f"{good_in_time} of {size.good} good posts done within {size.answer_within_s:.0f} s "
                        f"of {size.far} messages with an eta a year out")
    if far_rejected < size.far or far_dead < size.far:
        failures.append(f"eta a year out: {far_rejected} of {size.far} rejected under their ids, "
                        f"{far_dead} dead-lettered")
    if short_done < 2 * size.short:
        failures.append(f"short countdown / near eta: {short_done} of {2 * size.short} done")
    if early:
        failures.append(f"{len(early)} posts answered before their countdown or eta: {early[:3]}")
    failures += identity_failures(book, set(all_ids), set(task_ids), letters)
    if strays:
        failures.append(f"messages left where no worker reads or still held: {describe_keys(strays)}")
    notes = [f"good posts done within {size.answer_within_s:.0f} s: {good_in_time} of {size.good}",
             f"eta a year out: {far_rejected} rejected, {far_dead} dead letters of {size.far}",
             f"countdown 3 s / eta 4 s: {short_done} of {2 * size.short} done, {len(early)} too early",
             f"left in Redis: {describe_keys(strays) or 'nothing'}"]
    return DrillResult("producer-delays", len(all_ids), f"{size.far} messages with an eta a year out",
                       len(book.lost), book.duplicates, book.reprocessed, book.wall_since(sent_at),
                       book.statuses, notes, failures=failures,
                       extra={"good_in_time": good_in_time, "far_rejected": far_rejected, "far_dead": far_dead,
                              "short_done": short_done, "early": len(early), "strays": strays,
                              "left": left_in_redis(strays), "dead_letters": len(letters)})


# --- messages held by a worker that is SIGKILLed --------------------------------------------------------

@dataclass
class HeldSize:
    posts: int = 30  # per kind of message
    embed_delay_s: float = 3.0  # the worker is still embedding its first batch when killed
    seed: int = 0


def _held_through_kill(name: str, kinds: dict[str, Any], size: HeldSize, workdir: Path) -> DrillResult:
    """Send each kind's messages (kind -> message builder), SIGKILL the worker once it holds them all,
    restart it: every post must be answered, and nothing left anywhere."""
    posts = PostIds(size.seed)
    with PrivateRedis(aof=False) as broker, fresh_database() as db_url:
        stage = start_stage(db_url=db_url, redis_url=broker.url(), workdir=workdir, log_name=f"{name}.log",
                            FAKE_EMBED_DELAY_S=str(size.embed_delay_s))
        settings, worker = stage.settings, stage.worker
        queue, url = settings.queue, settings.redis_url
        sent: dict[str, list[str]] = {}
        entries = []
        for kind, build in kinds.items():
            batch = [posts.post(kind) for _ in range(size.posts)]
            sent[kind] = [p["id"] for p in batch]
            entries += [build(p, queue) for p in batch]
        all_ids = [i for ids in sent.values() for i in ids]
        try:
            started = time.time()
            clients.send_bare(url, queue, entries)
            held = _wait_taken(url, queue, timeout=20)
            before = count_rows(db_url)
            worker.kill()
            worker.start()
            # Redelivery: the visibility timeout, then the next restore sweep.
            wait_for(db_url, len(all_ids), timeout=settings.visibility_timeout_s + 45, stall_s=20)
            strays = wait_for_no_strays(url, queue, timeout=10)
            alive = worker.alive()
        finally:
            worker.stop()
        book = ledger(db_url, all_ids)
        letters = dead_letters(url, queue)
    failures = common_failures(alive=alive, left=None, errors=[], log=worker.all_logs())
    for kind, ids in sent.items():
        done = sum(book.by_id.get(i) == "done" for i in ids)
        if done < len(ids):
            failures.append(f"{kind}: {done} of {len(ids)} posts done after a SIGKILL while held")
    failures += identity_failures(book, set(all_ids), set(), letters)
    if strays:
        failures.append(f"messages left where no worker reads: {describe_keys(strays)}")
    if before >= len(all_ids):
        failures.append("the worker answered every post before the kill: nothing was held")
    notes = [f"held by the worker when SIGKILLed: {held}; rows written before the kill: {before}",
             f"left in Redis: {describe_keys(strays) or 'nothing'}; dead letters: {len(letters)}"]
    return DrillResult(name, len(all_ids), "SIGKILL while held, restart", len(book.lost), book.duplicates,
                       book.reprocessed, book.wall_since(started), book.statuses, notes, failures=failures,
                       extra={"held": held, "rows_before_kill": before, "strays": strays,
                              "left": left_in_redis(strays), "dead_letters": len(letters)})


def _wait_taken(redis_url: str, queue: str, timeout: float) -> dict[str, int]:
    """Wait until the worker has taken every message off the queue; what it then holds."""
    import redis

    from shared.wire.transport import inflight_key

    deadline = time.monotonic() + timeout
    with redis.Redis.from_url(redis_url) as client:
        while client.llen(queue) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)  # the last ones from in flight to unacked
        return {"queued": int(client.llen(queue)), "in_flight": int(client.llen(inflight_key(queue))),
                "unacked": int(client.hlen("unacked"))}


def _message(post: dict[str, Any], queue: str, **properties: Any) -> str:
    message = wire.envelope(wire.CLASSIFY, kwargs=post, queue=queue)
    for name, value in properties.items():
        if name == "delivery_info":
            message["properties"]["delivery_info"].update(value)
        else:
            message["properties"][name] = value
    return wire.encode(message)


def shared_tag(size: HeldSize, workdir: Path) -> DrillResult:
    tag = str(uuid.uuid4())  # a producer that sets its own delivery tag, the same on every message
    return _held_through_kill("producer-shared-tag", {
        "shared-delivery-tag": lambda post, queue: _message(post, queue, delivery_tag=tag),
    }, size, workdir)


def foreign_route(size: HeldSize, workdir: Path) -> DrillResult:
    return _held_through_kill("producer-foreign-route", {
        "routing-key-celery": lambda post, queue: _message(post, queue, delivery_info={"routing_key": "celery"}),
        "exchange-nope": lambda post, queue: _message(post, queue, delivery_info={"exchange": "nope"}),
    }, size, workdir)


# --- a chunk larger than the visibility timeout allows -------------------------------------------------

@dataclass
class ChunkSize:
    posts: int = 200  # in one classify_chunk message
    max_chunk_posts: int = 20
    per_text_s: float = 0.1  # the embedding API's time per text: the whole chunk takes ~20 s
    visibility_timeout_s: int = 8
    seed: int = 0


def big_chunk(size: ChunkSize, workdir: Path) -> DrillResult:
    from testkit.drills.storm import register_gemini_model

    key = f"AIzaSyDRILL-{uuid.uuid4().hex}"
    posts = PostIds(size.seed)
    chunk = [posts.post("big-chunk") for _ in range(size.posts)]
    ids = [p["id"] for p in chunk]
    with (PerTextGemini(api_key=key) as fake, PrivateRedis(aof=False) as broker,
          fresh_database() as db_url):
        env = base_env(db_url=db_url, redis_url=broker.url(), workdir=workdir, EMBEDDER="gemini",
                       GEMINI_API_KEY=key, GEMINI_BASE_URL=fake.base_url, GEMINI_TIMEOUT_S="60",
                       GEMINI_MAX_IN_FLIGHT="1", GEMINI_RPM="1000000", GEMINI_RATE_LIMITER="memory",
                       VISIBILITY_TIMEOUT_S=str(size.visibility_timeout_s),
                       MAX_CHUNK_POSTS=str(size.max_chunk_posts))
        settings = settings_for(env)
        register_gemini_model(db_url, settings.models_path, key, fake.base_url)
        fake.per_text_s = size.per_text_s
        worker = WorkerProcess(env, workdir / "big-chunk.log").start()
        try:
            started = time.time()
            clients.send_bare(settings.redis_url, settings.queue,
                              [wire.raw_message(wire.CLASSIFY_CHUNK, {"posts": chunk}, settings.queue)])
            wait_for(db_url, len(ids), timeout=60 + size.posts * size.per_text_s * 3, stall_s=30)
            # A redelivered copy would come back a visibility timeout (plus a sweep) after delivery.
            strays = wait_for_no_strays(settings.redis_url, settings.queue,
                                        timeout=size.visibility_timeout_s + 15)
            time.sleep(2)
            alive = worker.alive()
        finally:
            worker.stop()
        book = ledger(db_url, ids)
        letters = dead_letters(settings.redis_url, settings.queue)
    failures = common_failures(alive=alive, left=None, errors=[], log=worker.all_logs())
    done = sum(book.by_id.get(i) == "done" for i in ids)
    if done < len(ids):
        failures.append(f"{done} of {len(ids)} posts of the chunk done")
    if book.reprocessed:
        failures.append(f"{book.reprocessed} posts of the chunk processed more than once")
    failures += identity_failures(book, set(ids), set(), letters)
    if strays:
        failures.append(f"messages left in Redis: {describe_keys(strays)}")
    whole_s = size.posts * size.per_text_s
    notes = [f"one chunk of {size.posts} posts (~{whole_s:.0f} s of embedding whole) against a visibility "
             f"timeout of {size.visibility_timeout_s} s, MAX_CHUNK_POSTS={size.max_chunk_posts}",
             f"fake Gemini calls: {len(fake.calls)}; left in Redis: {describe_keys(strays) or 'nothing'}"]
    return DrillResult("producer-big-chunk", len(ids), f"a chunk of ~{whole_s:.0f} s of work, visibility "
                       f"{size.visibility_timeout_s} s", len(book.lost), book.duplicates, book.reprocessed,
                       book.wall_since(started), book.statuses, notes, failures=failures,
                       extra={"done": done, "strays": strays, "calls": len(fake.calls),
                              "left": left_in_redis(strays), "dead_letters": len(letters)})


class PerTextGemini(FakeGemini):
    """The fake Gemini, paid per text: a call takes `per_text_s` for each text it embeds."""

    per_text_s = 0.0

    def handle(self, call: Any, path: str, key: str | None, raw: bytes) -> Any:
        if self.per_text_s:
            try:
                texts = len(json.loads(raw).get("requests") or [])
            except (ValueError, AttributeError):
                texts = 0
            time.sleep(texts * self.per_text_s)
        return super().handle(call, path, key, raw)

    def __enter__(self) -> PerTextGemini:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
