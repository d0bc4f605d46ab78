"""What metrics cost: real workers side by side, one with METRICS_PORT (scraped every second), one
with METRICS_PORT=0, and one with METRICS_PORT=0 and Celery task events on (TASK_EVENTS=1, what
Flower's task list needs), each on its own queue, fed the same posts in rotating rounds.

Per round and side: single-post messages, then a backfill in chunks, each pushed onto the list at
once (stamped, in one Redis pipeline, so the producer is never the bottleneck) and timed from the
push to the last row committed in PostgreSQL, and the worker's CPU per post. The fake embedder
(no model cost) makes the pipeline's own work the whole cost: the worst case for the overhead.

    .venv/bin/python -m bench.metrics_overhead                    # 3 rounds of 2,000 + 10,000 posts
    .venv/bin/python -m bench.metrics_overhead --rounds 2 --single 1000 --backfill 5000

Writes bench/results/metrics_overhead.json and .md. The workers, database and Redis keys are
removed on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import cpu_seconds  # noqa: E402
from testkit.databases import ADMIN_URL, throwaway_database  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SIDES = ("on", "off", "events")
SIDE_ENV = {"on": {}, "off": {"METRICS_PORT": "0"}, "events": {"METRICS_PORT": "0", "TASK_EVENTS": "1"}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds; each starts with the next side in turn")
    p.add_argument("--single", type=int, default=2000, help="single-post messages per round and side")
    p.add_argument("--backfill", type=int, default=10000, help="backfill posts per round and side")
    p.add_argument("--chunk", type=int, default=100, help="posts per backfill message")
    p.add_argument("--batch-size", type=int, default=100, help="BATCH_SIZE")
    p.add_argument("--scrape-s", type=float, default=1.0, help="seconds between scrapes of the metrics side")
    p.add_argument("--timeout", type=float, default=600.0, help="deadline (s) of each phase")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    p.add_argument("--pg-admin-url", default=ADMIN_URL)
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def count_rows(db_url: str, prefix: str) -> int:
    from sqlalchemy import func, select

    from shared.database.connection import session_scope
    from shared.database.tables import Result

    with session_scope(db_url) as session:
        return int(session.scalar(select(func.count()).select_from(Result)
                                  .where(Result.post_id.startswith(prefix))) or 0)


def wait_rows(db_url: str, prefix: str, n: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    count = count_rows(db_url, prefix)
    while count < n and time.monotonic() < deadline:
        time.sleep(0.2)
        count = count_rows(db_url, prefix)
    return count


class Scraper:
    """GETs /metrics every `every_s` seconds, as Prometheus would (only more often)."""

    def __init__(self, port: int, every_s: float) -> None:
        self.url, self.every_s = f"http://127.0.0.1:{port}/metrics", every_s
        self.scrapes, self.failures = 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as reply:
                    reply.read()
                self.scrapes += 1
            except OSError:
                self.failures += 1

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def messages(kind: str, queue: str, posts: list[dict[str, Any]], prefix: str, chunk: int) -> list[str]:
    """The posts as stamped messages, as the producer sends them (single posts or chunks)."""
    from shared.wire.protocol import CLASSIFY_CHUNK_TASK, CLASSIFY_TASK, SENT_AT_HEADER
    from testkit.wire import envelope

    bodies = [{"id": f"{prefix}{p['id']}", "text": p["text"]} for p in posts]
    if kind == "single":
        built = [envelope(CLASSIFY_TASK, kwargs=body, queue=queue) for body in bodies]
    else:
        built = [envelope(CLASSIFY_CHUNK_TASK, kwargs={"posts": bodies[i:i + chunk]}, queue=queue)
                 for i in range(0, len(bodies), chunk)]
    now = time.time()
    for message in built:
        message["headers"][SENT_AT_HEADER] = now
    return [json.dumps(message) for message in built]


def run_phase(kind: str, client: Any, queue: str, db: str, pid: int, posts: list[dict[str, Any]],
              prefix: str, chunk: int, timeout: float) -> dict[str, Any]:
    """Push `posts` (single messages or chunks) at once and time them until every row is in."""
    encoded = messages(kind, queue, posts, prefix, chunk)
    cpu, started = cpu_seconds(pid), time.monotonic()
    with client.pipeline(transaction=False) as pipe:
        for start in range(0, len(encoded), 500):
            pipe.lpush(queue, *encoded[start:start + 500])
        pipe.execute()
    done = wait_rows(db, prefix, len(posts), timeout)
    seconds, cpu = time.monotonic() - started, cpu_seconds(pid) - cpu
    return {"posts": len(posts), "complete": done == len(posts), "seconds": round(seconds, 2),
            "posts_per_s": round(done / seconds, 1),
            "worker_cpu_ms_per_post": round(1000 * cpu / max(1, done), 3)}


def recording_cost(posts: int = 100, repeats: int = 300) -> dict[str, float]:
    """CPU the recording itself costs, in this process, free of the machine's noise: per post for a
    batch of `posts` (what the tasks and pipeline call), and per scrape of the registry."""
    from prometheus_client import generate_latest

    from shared.database.results import ResultRow, Status
    from worker import metrics
    from worker.pipeline import BatchReport

    metrics.enable()
    rows = [ResultRow(post_id=f"p{i}", model_name="topics", model_version=1, status=Status.DONE,
                      score=0.4 + (i % 5) / 10) for i in range(posts)]
    report = BatchReport(written=rows, model_name="topics", model_version=1)
    stamps = {row.post_id: time.time() - 1 for row in rows}
    started = time.process_time()
    for _ in range(repeats):
        metrics.taken_up(posts, posts)
        metrics.observe_embed("fake", 0.01, hits=10, misses=posts - 10)
        metrics.observe_classify(0.002)
        metrics.batch_done(report, posts, stamps)
    per_post_us = 1e6 * (time.process_time() - started) / (repeats * posts)
    started = time.process_time()
    for _ in range(100):
        generate_latest(metrics.REGISTRY)
    per_scrape_ms = 1000 * (time.process_time() - started) / 100
    return {"recording_us_per_post": round(per_post_us, 2), "scrape_ms": round(per_scrape_ms, 2)}


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase: the median rate and CPU of each side, and each side over `off`."""
    out: dict[str, Any] = {}
    for phase in ("single", "backfill"):
        side = {s: [r[s][phase] for r in rounds] for s in SIDES}
        rate = {s: round(statistics.median(x["posts_per_s"] for x in side[s]), 1) for s in SIDES}
        cpu = {s: round(statistics.median(x["worker_cpu_ms_per_post"] for x in side[s]), 3) for s in SIDES}
        out[phase] = {"posts_per_s": rate, "worker_cpu_ms_per_post": cpu,
                      "rate_over_off": {s: round(rate[s] / rate["off"], 3) for s in SIDES},
                      "cpu_over_off": {s: round(cpu[s] / cpu["off"], 3) for s in SIDES}}
    return out


def table(results: dict[str, Any]) -> str:
    s = results["settings"]
    lines = [
        "# Metrics overhead: workers with METRICS_PORT (`on`, scraped every "
        f"{s['scrape_s']:g} s), METRICS_PORT=0 (`off`), and METRICS_PORT=0 with TASK_EVENTS=1 (`events`)",
        "",
        f"{results['when']} on {s['cores']} cores shared with other jobs (load average "
        f"{s['load_avg_at_start']:.1f} at start, {s['load_avg_at_end']:.1f} at end); fake embedder, "
        f"BATCH_SIZE {s['batch_size']}, backfill chunks of {s['chunk']}; {s['rounds']} rotating rounds of "
        f"{s['single']} single-post messages and {s['backfill']} backfill posts per side; medians.", "",
        "| phase | side | posts/s | rate / off | worker CPU ms/post | CPU / off |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for phase, f in results["summary"].items():
        for side in SIDES:
            lines.append(f"| {phase} | {side} | {f['posts_per_s'][side]} | {f['rate_over_off'][side]:.3f} | "
                         f"{f['worker_cpu_ms_per_post'][side]} | {f['cpu_over_off'][side]:.3f} |")
    lines += ["", "Rounds (posts/s, worker CPU ms per post):", ""]
    for i, r in enumerate(results["rounds"], 1):
        lines.append(f"- round {i} ({' then '.join(r['order'])}): " + "; ".join(
            f"{side} {phase} {r[side][phase]['posts_per_s']} posts/s, "
            f"{r[side][phase]['worker_cpu_ms_per_post']} ms"
            for side in SIDES for phase in ("single", "backfill")))
    cost = results["recording"]
    lines += ["", f"Recording alone, measured in one process (no noise from other jobs): "
              f"{cost['recording_us_per_post']} µs of CPU per post in batches of 100, "
              f"{cost['scrape_ms']} ms per scrape of /metrics (without the Redis backlog query)."]
    lines += ["", f"Scrapes of the metrics side: {results['scrapes']} ({results['scrape_failures']} failed)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-ups below
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import redis

    from testkit.drills.services import free_port
    from testkit.factories import make_posts, register_fake_model
    from testkit.worker_process import WorkerProcess

    results: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": {"rounds": args.rounds, "single": args.single, "backfill": args.backfill,
                     "chunk": args.chunk, "batch_size": args.batch_size, "scrape_s": args.scrape_s,
                     "cores": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0]},
        "rounds": [],
    }
    queues = {side: f"topicq-bench-metrics-{side}-{uuid.uuid4().hex[:6]}" for side in SIDES}
    port = free_port()
    workers: dict[str, WorkerProcess] = {}
    scrapes = failures = 0
    with (tempfile.TemporaryDirectory(prefix="topicq-bench-") as tmp,
          throwaway_database(args.pg_admin_url, "topicq_bench") as db):
        register_fake_model(db, Path(tmp) / "models")
        try:
            for side in SIDES:
                env = {"DATABASE_URL": db, "REDIS_URL": args.redis_url, "QUEUE": queues[side],
                       "EMBEDDER": "fake", "BATCH_SIZE": str(args.batch_size), "BATCH_WAIT_S": "0.5",
                       "MODEL_DIR": f"{tmp}/models",
                       "TOPICQ_HOME": f"{tmp}/home-{side}", "MODEL_REFRESH_S": "60",
                       "METRICS_PORT": str(port), **SIDE_ENV[side]}
                print(f"starting the worker with metrics {side} ...", flush=True)
                workers[side] = WorkerProcess(env, Path(tmp) / f"worker-{side}.log").start(timeout=180)
            client = redis.Redis.from_url(args.redis_url)
            pids = {side: int(workers[side].process.pid) for side in SIDES}  # type: ignore[union-attr]
            with Scraper(port, args.scrape_s) as scraper:
                for number in range(args.rounds):
                    order = SIDES[number % len(SIDES):] + SIDES[:number % len(SIDES)]
                    measured: dict[str, Any] = {"order": list(order)}
                    for side in order:
                        # Texts of each side's own (seeded by round and side): every side misses the
                        # embedding cache alike, none reads what another side just stored.
                        seed = 10 * number + SIDES.index(side)
                        single = make_posts(args.single, f"s{number}", seed=seed, words=16)
                        backfill = make_posts(args.backfill, f"b{number}", seed=1000 + seed, words=16)
                        measured[side] = {
                            "single": run_phase("single", client, queues[side], db, pids[side], single,
                                                f"{side}/s{number}/", args.chunk, args.timeout),
                            "backfill": run_phase("backfill", client, queues[side], db, pids[side],
                                                  backfill, f"{side}/b{number}/", args.chunk, args.timeout)}
                        print(f"round {number + 1} {side}: {measured[side]}", flush=True)
                    results["rounds"].append(measured)
                scrapes, failures = scraper.scrapes, scraper.failures
        finally:
            for worker in workers.values():
                worker.stop()
            client = redis.Redis.from_url(args.redis_url)
            for queue in queues.values():
                client.delete(queue, f"{queue}.dead")
    results["settings"]["load_avg_at_end"] = os.getloadavg()[0]
    results["summary"] = summary(results["rounds"])
    results["scrapes"], results["scrape_failures"] = scrapes, failures
    results["recording"] = recording_cost()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics_overhead.json").write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    (args.out / "metrics_overhead.md").write_text(text)
    print(text)
    ok = all(r[s][p]["complete"] for r in results["rounds"] for s in SIDES for p in ("single", "backfill"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
