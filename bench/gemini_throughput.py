"""End-to-end throughput with the Gemini embedder, against the fake Gemini API.

Real `topicq worker` processes embed through google-genai against the fake
Gemini server (150 ms per call by default), classify and write rows to a
fresh PostgreSQL database; posts go through Redis, sent one message per post
(`Producer.send`) and in backfill chunks (`cli.backfill`). Figures:

- posts/s from the first send to the last row committed, per path;
- the raw embedder rate against the same fake (same batch size and calls in
  flight, no queue, no database) and the ratio pipeline / raw;
- with --rate-429 > 0, a 429 storm: every post completed, and the shortest gap
  between a 429 and the next call the fake saw, against the retryDelay.

    .venv/bin/python -m bench.gemini_throughput                 # 20,000 posts, both paths
    .venv/bin/python -m bench.gemini_throughput --posts 5000 --paths single --rate-429 0.5
    .venv/bin/python -m bench.gemini_throughput --posts 10000 --profile \
        --compare earlier/gemini_throughput.json         # side by side, CPU per post by stage

With --profile (py-spy installed), the single path's workers and producer are
sampled meanwhile (bench/stage_profile.py): gemini_message_profile.md.

Writes bench/results/gemini_throughput.json and .md. Bounded: each phase
has a deadline; workers, the fake, the database and the Redis keys are
cleaned up on exit (also on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/gemini_throughput.py` as well as `-m bench...`
    sys.path.insert(0, str(ROOT))

from bench.common import CpuMeter, FakeGeminiProcess, pids_named  # noqa: E402
from bench.stage_profile import (  # noqa: E402
    PRODUCER_STAGES,
    WORKER_STAGES,
    StageProfile,
    by_stage,
    py_spy,
    stage_table,
)
from testkit.databases import ADMIN_URL, throwaway_database  # noqa: E402

KEY = "bench-key-not-a-secret"
RESULTS = ROOT / "bench" / "results"
FILLER_SHARE = 0.6  # share of words of no topic: posts read more like prose


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--posts", type=int, default=20_000, help="posts per path")
    p.add_argument("--paths", default="single,chunk", help="single (one message a post), chunk (backfill)")
    p.add_argument("--words", type=int, default=60, help="words per post (~6 characters each)")
    p.add_argument("--latency-ms", type=float, default=150.0, help="the fake's time per call")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--concurrency", type=int, default=8, help="threads (batches at once) per worker")
    p.add_argument("--batch-size", type=int, default=100, help="BATCH_SIZE (posts per embed call)")
    p.add_argument("--batch-wait", type=float, default=0.5, help="BATCH_WAIT_S")
    p.add_argument("--chunk", type=int, default=100, help="posts per backfill message")
    p.add_argument("--max-in-flight", type=int, default=8, help="GEMINI_MAX_IN_FLIGHT per worker")
    p.add_argument("--no-cache", action="store_true", help="CACHE_EMBEDDINGS=false")
    p.add_argument("--rate-429", type=float, default=0.0, help="share of calls refused 429 (storm mode)")
    p.add_argument("--retry-delay", type=float, default=1.0, help="retryDelay (s) of the 429s")
    p.add_argument("--storm-posts", type=int, default=3000, help="posts sent during the 429 storm")
    p.add_argument("--timeout", type=float, default=300.0, help="deadline (s) of each phase")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--pg-admin-url", default=ADMIN_URL)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--profile", action="store_true",
                   help="sample the workers and the producer with py-spy during the single path: CPU ms per "
                        "post by stage, in gemini_message_profile.md (needs `pip install py-spy`)")
    p.add_argument("--compare", type=Path, default=None,
                   help="an earlier run's gemini_throughput.json, shown side by side (--compare-label)")
    p.add_argument("--compare-label", default="before")
    p.add_argument("--label", default="after", help="this run's label beside --compare's")
    return p.parse_args(argv)


def bench_posts(n: int, tag: str, seed: int, words: int) -> list[dict[str, Any]]:
    """Posts mostly about one topic each, random enough that no two share an embedding-cache entry."""
    from testkit.factories import make_posts

    return make_posts(n, tag, seed, words=words, filler=FILLER_SHARE)


def measure_raw(base_url: str, texts: list[str], *, batch_size: int, in_flight: int) -> dict[str, Any]:
    """The embedder alone: the same calls as the workers make, from one process."""
    from shared.model.embedders.gemini import GeminiEmbedder

    gemini = GeminiEmbedder(KEY, base_url=base_url, batch_size=min(batch_size, 100),
                            max_in_flight=in_flight, timeout_s=30)
    try:
        gemini.embed(texts[:10])  # connect first
        started, cpu = time.perf_counter(), time.process_time()
        gemini.embed(texts)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        gemini.close()
    return {"texts": len(texts), "seconds": round(seconds, 2), "texts_per_s": round(len(texts) / seconds, 1),
            "batch_size": min(batch_size, 100), "calls_in_flight": in_flight,
            "client_cpu_ms_per_text": round(1000 * cpu / len(texts), 3)}


class Workers:
    """N `topicq worker` processes, started together, killed on exit."""

    def __init__(self, env: dict[str, str], n: int, concurrency: int, log_dir: Path) -> None:
        from testkit.worker_process import WorkerProcess

        self.procs = [WorkerProcess(env, log_dir / f"worker{i}.log", concurrency) for i in range(n)]

    def __enter__(self) -> Workers:
        errors: list[BaseException] = []

        def start(worker: Any) -> None:
            try:
                worker.start(timeout=180)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(w,)) for w in self.procs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            self.__exit__()
            raise errors[0]
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self.procs:
            worker.stop()

    def print_logs(self, lines: int = 40) -> None:
        """The end of each worker's log: why a run did not complete."""
        for worker in self.procs:
            tail = worker.log().splitlines()[-lines:]
            print(f"--- {worker.log_path.name} (last {len(tail)} lines)", *tail, sep="\n", file=sys.stderr)


def reset_tables(db_url: str) -> None:
    from sqlalchemy import text

    from shared.database.connection import session_scope

    with session_scope(db_url) as session:
        session.execute(text("TRUNCATE results, embedding_cache"))


def wait_for(db_url: str, n: int, deadline: float) -> int:
    from testkit.worker_process import count_rows

    count = count_rows(db_url)
    while count < n and time.monotonic() < deadline:
        time.sleep(0.25)
        count = count_rows(db_url)
    return count


def row_summary(db_url: str, started_wall: float) -> dict[str, Any]:
    from sqlalchemy import func, select

    from shared.database.connection import session_scope
    from shared.database.tables import Result

    with session_scope(db_url) as session:
        by_status = dict(session.execute(select(Result.status, func.count()).group_by(Result.status)).all())
        last, batches = session.execute(
            select(func.max(Result.processed_at), func.count(func.distinct(Result.batch_id)))).one()
        correct = session.scalar(select(func.count()).where(
            Result.label == Result.post_metadata["truth"].as_string()))
    total = sum(by_status.values())
    seconds = (last.timestamp() - started_wall) if last else float("nan")
    return {"rows": total, "by_status": by_status, "seconds": round(seconds, 2),
            "posts_per_s": round(total / seconds, 1) if last else 0.0,
            "posts_per_embed_call": round(total / batches, 1) if batches else None,
            "accuracy": round((correct or 0) / total, 3) if total else None}


def run_path(path: str, posts: list[dict[str, Any]], settings: Any, fake: FakeGeminiProcess,
             timeout: float, chunk: int, meter: CpuMeter,
             profile_dir: Path | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Send `posts` by `path`, wait for every row; the figures, and the calls the fake saw. With
    `profile_dir`, the workers and this process are sampled by stage meanwhile (stage_profile.py)."""
    from cli.backfill import backfill
    from shared.wire.producer import Producer

    reset_tables(settings.db_url)
    fake.take_calls()
    spies: dict[str, StageProfile] = {}
    if profile_dir is not None:
        spies = {"workers": StageProfile(meter.groups["workers"], profile_dir, f"{path}-worker"),
                 "producer (this process)": StageProfile([os.getpid()], profile_dir, f"{path}-producer")}
    with ExitStack() as stack:
        for spy in spies.values():
            stack.enter_context(spy)
        time.sleep(0.5 if spies else 0)  # py-spy attached before the first send
        meter.start()
        started_wall, started = time.time(), time.monotonic()
        if path == "single":
            producer = Producer(settings)
            try:
                for post in posts:
                    producer.send(producer.validate(post["id"], post["text"], post["metadata"]))
            finally:
                producer.close()
        else:
            backfill(posts, settings=settings, chunk_size=chunk)
        sent_s = time.monotonic() - started
        count = wait_for(settings.db_url, len(posts), started + timeout)
        cpu = meter.stop()
    result = {"path": path, "posts": len(posts), "send_seconds": round(sent_s, 2),
              "send_posts_per_s": round(len(posts) / sent_s, 1), "complete": count >= len(posts),
              **row_summary(settings.db_url, started_wall)}
    calls = fake.take_calls()
    result["gemini_calls"] = len(calls)
    result["gemini_outcomes"] = _outcomes(calls)
    result["cpu_ms_per_post"] = per_post = {name: round(1000 * v / len(posts), 3) for name, v in cpu.items()}
    # What topicq itself spends (the fake stands in for Google's servers; the rest of the machine
    # is other people's work): the rate its CPU would allow on this many dedicated cores.
    ours = sum(v for name, v in per_post.items() if name not in ("fake gemini", "whole machine"))
    result["topicq_cpu_ms_per_post"] = round(ours, 3)
    result["cpu_ceiling_posts_per_s"] = round(1000 * (os.cpu_count() or 1) / ours) if ours else None
    result["machine_busy_share"] = round(cpu["whole machine"] / (os.cpu_count() or 1)
                                         / max(result["seconds"], 1e-9), 2)
    result["complete"] = result["complete"] and result["by_status"].get("done", 0) == len(posts)
    if spies:
        result["profile"] = {
            name: stage_table(by_stage(spy.stacks(), WORKER_STAGES if name == "workers" else PRODUCER_STAGES),
                              per_post[name])
            for name, spy in spies.items()}
    return result, calls


def _outcomes(calls: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        counts[call["outcome"]] = counts.get(call["outcome"], 0) + 1
    return counts


IN_FLIGHT_S = 0.05  # a call the fake stamps this soon after a 429 may have been sent before it was read


def storm_gaps(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """How soon calls reached the fake after each 429 went out, against its retryDelay.

    A call stamped within the in-flight window of a 429 may have been sent
    before any worker had read that 429 (another thread or worker already on
    its way). The window is IN_FLIGHT_S plus the longest the fake itself lagged
    in finishing a reply during the run (on a starved host its time stamps lag
    too). Any later call inside the retryDelay means the delay was not honoured.
    """
    lag = max((c["end"] - (c["replied"] or c["end"]) for c in calls), default=0.0)
    window = IN_FLIGHT_S + lag
    ordered = sorted(calls, key=lambda c: c["start"])
    starts = [c["start"] for c in ordered]
    first_gaps, in_flight, honoured = [], 0, []
    too_soon: list[float] = []
    for call in ordered:
        if call["outcome"] != "429":
            continue
        delay, replied = call["retry_delay_s"] or 0.0, call["replied"] or call["end"]
        i = bisect.bisect_right(starts, replied)
        if i < len(starts):
            first_gaps.append(starts[i] - replied)
        for later in starts[i:]:
            gap = later - replied
            if gap >= delay:
                honoured.append(gap)
                break
            if gap < window:
                in_flight += 1
            else:
                too_soon.append(round(gap, 3))
    return {"refused_429": sum(c["outcome"] == "429" for c in calls),
            "min_gap_after_429_s": round(min(first_gaps), 3) if first_gaps else None,
            "in_flight_window_s": round(window, 3),
            "calls_in_flight_at_a_429": in_flight,
            "calls_sent_within_retry_delay": len(too_soon),
            "gaps_within_retry_delay_s": too_soon,
            "min_gap_after_429_excluding_in_flight_s": round(min(honoured), 3) if honoured else None}


def table(results: dict[str, Any]) -> str:
    s = results["settings"]
    lines = [
        "# Gemini throughput (fake Gemini API, real workers, PostgreSQL, Redis)", "",
        f"{results['when']} on {s['cores']} cores (shared); fake latency {s['latency_ms']:g} ms per call; "
        f"{s['workers']} workers x {s['concurrency']} threads, BATCH_SIZE {s['batch_size']}, "
        f"GEMINI_MAX_IN_FLIGHT {s['max_in_flight']}, backfill chunk {s['chunk']}, "
        f"embedding cache {'on' if s['cache_embeddings'] else 'off'}.", "",
        "| run | posts | complete | posts/s | send posts/s | posts per call | ratio to raw "
        "| topicq CPU ms/post | CPU ceiling posts/s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    raw = results["raw"]["texts_per_s"]
    for run in _labelled_runs(results):
        lines.append(f"| {run['path']} | {run['posts']} | {run['complete']} | {run['posts_per_s']} | "
                     f"{run['send_posts_per_s']} | {run['posts_per_embed_call']} | "
                     f"{run['posts_per_s'] / raw:.2f} | {run['topicq_cpu_ms_per_post']} | "
                     f"{run['cpu_ceiling_posts_per_s']} |")
    lines.append(f"| raw embedder (no queue, no DB) | {results['raw']['texts']} | True | {raw} | | "
                 f"{results['raw']['batch_size']} | 1.00 | {results['raw']['client_cpu_ms_per_text']} | |")
    lines += ["", "posts/s: first send to last row committed. topicq CPU ms/post: workers, producer, Redis "
              "and PostgreSQL (the fake stands in for Google's servers; the Redis and PostgreSQL figures "
              "count every process of those servers, other users' too). CPU ceiling: the rate that CPU "
              "allows on this many dedicated cores.", ""]
    for run in _labelled_runs(results):
        lines.append(f"- {run['path']}: the machine was {run['machine_busy_share']:.0%} busy (other users "
                     f"included); CPU ms per post by process: {run['cpu_ms_per_post']}")
    if results.get("storm"):
        st = results["storm"]
        state = "all complete" if st["complete"] else "INCOMPLETE"
        lines += ["", f"429 storm: {st['rate_429']:.0%} of calls refused with retryDelay "
                  f"{st['retry_delay_s']:g}s; {st['by_status']} of {st['posts']} posts ({state}), "
                  f"{st['posts_per_s']} posts/s; {st['refused_429']} refusals. After a 429, "
                  f"{st['calls_sent_within_retry_delay']} calls reached the fake within the retryDelay "
                  f"(not counting {st['calls_in_flight_at_a_429']} that arrived within "
                  f"{st['in_flight_window_s'] * 1000:.0f} ms, "
                  f"sent before the 429 was read); the first call after that came "
                  f"{st['min_gap_after_429_excluding_in_flight_s']} s after a 429 at the soonest "
                  f"(retryDelay {st['retry_delay_s']:g} s)."]
    return "\n".join(lines) + "\n"


def _labelled_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """This run's paths, after those of the run it is compared with (each path named with its label)."""
    compared = results.get("compare")
    if not compared:
        return list(results["runs"])
    return [{**run, "path": f"{run['path']} ({label})"}
            for label, runs in ((compared["label"], compared["runs"]), (results["label"], results["runs"]))
            for run in runs]


def profile_table(results: dict[str, Any]) -> str:
    """CPU ms per post by stage of the single path, for the workers and the producer (and the compared
    run's, side by side, when it was profiled)."""
    runs = {results.get("label", "this run"): _single(results["runs"])}
    compared = results.get("compare")
    if compared and _single(compared["runs"]).get("profile"):
        runs = {compared["label"]: _single(compared["runs"]), **runs}
    labels = list(runs)
    lines = ["# Single-message path: CPU per post by stage (py-spy samples, Gemini fake)", "",
             f"{results['when']}; {results['settings']['posts']} posts, one message each "
             f"(`Producer.send`), {results['settings']['workers']} workers x "
             f"{results['settings']['concurrency']} threads. Each sample goes to the innermost frame on "
             "its stack that names a stage (bench/stage_profile.py); a stage's CPU ms per post is its "
             "share of the samples times the process group's measured CPU ms per post.", ""]
    for group in ("workers", "producer (this process)"):
        stages: list[str] = []
        for run in runs.values():
            stages += [row["stage"] for row in run["profile"][group] if row["stage"] not in stages]
        lines += [f"## {group}", "", "| stage | " + " | ".join(f"{label} ms/post" for label in labels) + " |",
                  "|---|" + "---:|" * len(labels)]
        for stage in stages:
            cells = []
            for run in runs.values():
                row = next((r for r in run["profile"][group] if r["stage"] == stage), None)
                cells.append(f"{row['cpu_ms_per_post']:.3f}" if row else "-")
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
        lines.append("| **total (measured)** | " + " | ".join(
            f"**{run['cpu_ms_per_post'][group]:.3f}**" for run in runs.values()) + " |")
        lines.append("")
    rates = " | ".join(f"{run['posts_per_s']}" for run in runs.values())
    lines.append(f"| posts/s (single) | {rates} |")
    return "\n".join(lines) + "\n"


def _single(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return next((run for run in runs if run["path"] == "single"), {})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile:
        py_spy()  # missing: say so now, not after the database and workers are up
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-ups below
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from shared.settings import Settings

    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    queue = f"topicq-bench-{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": {"posts": args.posts, "latency_ms": args.latency_ms, "workers": args.workers,
                     "concurrency": args.concurrency, "batch_size": args.batch_size,
                     "batch_wait_s": args.batch_wait, "chunk": args.chunk,
                     "max_in_flight": args.max_in_flight, "cache_embeddings": not args.no_cache,
                     "words": args.words, "cores": os.cpu_count(),
                     "load_avg_at_start": os.getloadavg()[0]},
        "runs": [],
        "label": args.label,
    }
    if args.compare:
        earlier = json.loads(args.compare.read_text())
        results["compare"] = {"label": args.compare_label, "when": earlier["when"], "runs": earlier["runs"],
                              "settings": earlier["settings"]}
    with tempfile.TemporaryDirectory(prefix="topicq-bench-") as tmp, \
            FakeGeminiProcess(api_key=KEY, latency_ms=args.latency_ms) as fake, \
            throwaway_database(args.pg_admin_url, "topicq_bench") as db_url:
        env = {
            "DATABASE_URL": db_url, "REDIS_URL": args.redis_url, "QUEUE": queue,
            "EMBEDDER": "gemini", "GEMINI_API_KEY": KEY, "GEMINI_BASE_URL": fake.base_url,
            "GEMINI_MAX_IN_FLIGHT": str(args.max_in_flight), "GEMINI_RPM": "100000000",
            "GEMINI_TPM": "1000000000", "GEMINI_TIMEOUT_S": "30",
            "BATCH_SIZE": str(args.batch_size), "BATCH_WAIT_S": str(args.batch_wait),
            "BACKFILL_CHUNK": str(args.chunk), "CACHE_EMBEDDINGS": str(not args.no_cache).lower(),
            "MODEL_DIR": f"{tmp}/models", "TOPICQ_HOME": f"{tmp}/home",
            "RETRY_BASE_S": "0.5", "RETRY_MAX_S": "10",
        }
        os.environ.update(env)
        settings = Settings()
        _register_model(settings, fake.base_url)
        posts = bench_posts(args.posts, "raw", 0, args.words)
        from shared.model.preprocess import preprocess

        print(f"raw embedder: {len(posts)} texts ...", flush=True)
        in_flight = args.workers * args.concurrency
        results["raw"] = measure_raw(fake.base_url, [preprocess(p["text"]) for p in posts],
                                     batch_size=args.batch_size, in_flight=in_flight)
        print(f"  {results['raw']}", flush=True)
        fake.take_calls()
        try:
            with Workers(env, args.workers, args.concurrency, Path(tmp)) as workers:
                meter = CpuMeter({
                    "workers": [w.process.pid for w in workers.procs if w.process],
                    "producer (this process)": [os.getpid()], "fake gemini": [fake.pid],
                    "redis": pids_named("redis-server"), "postgres": pids_named("postgres"),
                })
                for path in paths:
                    print(f"pipeline, {path}: {args.posts} posts ...", flush=True)
                    profile_dir = None
                    if args.profile and path == "single":  # the raw samples are kept for a closer look
                        profile_dir = Path(tempfile.mkdtemp(prefix="topicq-profile-"))
                        print(f"  py-spy samples in {profile_dir}", flush=True)
                    run, _ = run_path(path, bench_posts(args.posts, path, 1, args.words), settings, fake,
                                      args.timeout, args.chunk, meter, profile_dir)
                    run["ratio_to_raw"] = round(run["posts_per_s"] / results["raw"]["texts_per_s"], 3)
                    results["runs"].append(run)
                    print(f"  {run}", flush=True)
                    if not run["complete"]:
                        workers.print_logs()
                if args.rate_429 > 0:
                    print(f"429 storm ({args.rate_429:.0%}, retryDelay {args.retry_delay}s): "
                          f"{args.storm_posts} posts ...", flush=True)
                    fake.set(rate_429=args.rate_429, retry_delay_s=args.retry_delay)
                    try:
                        storm_posts = bench_posts(args.storm_posts, "storm", 2, args.words)
                        storm, calls = run_path("single", storm_posts, settings, fake, args.timeout,
                                                args.chunk, meter)
                    finally:
                        fake.set(rate_429=0.0)
                    storm.update(storm_gaps(calls), rate_429=args.rate_429, retry_delay_s=args.retry_delay)
                    if not storm["complete"]:
                        workers.print_logs()
                    results["storm"] = storm
                    print(f"  {storm}", flush=True)
        finally:
            _drop_redis_keys(args.redis_url, queue)
            results["settings"]["load_avg_at_end"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gemini_throughput.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (args.out / "gemini_throughput.md").write_text(table(results))
    print(table(results))
    if _single(results["runs"]).get("profile"):
        (args.out / "gemini_message_profile.md").write_text(profile_table(results))
        print(profile_table(results))
    storm = results.get("storm", {})
    ok = (all(r["complete"] for r in results["runs"]) and storm.get("complete", True)
          and not storm.get("calls_sent_within_retry_delay"))
    return 0 if ok else 1


def _register_model(settings: Any, base_url: str) -> None:
    from shared.model.embedders.gemini import GeminiEmbedder
    from testkit.factories import register_fake_model

    gemini = GeminiEmbedder(KEY, base_url=base_url, timeout_s=30)
    try:
        register_fake_model(settings.db_url, settings.models_path, embedder=gemini)
    finally:
        gemini.close()


def _drop_redis_keys(url: str, queue: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = [k for pattern in (f"{queue}*", "unacked*", f"_kombu.binding*{queue}", "topicq:ratelimit:*")
                for k in client.scan_iter(match=pattern, count=1000)]
        if keys:
            client.delete(*keys)
        client.zrem("_kombu.binding_deadlines", queue)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
