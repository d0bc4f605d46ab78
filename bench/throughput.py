"""Local-embedder throughput: the worker's pipeline against its encoder called directly, side by side.

In one run, on the same 20 Newsgroups test posts (real lengths):

- raw: the worker's embedder (--embedder, default the int8 onnx encoder) in
  this process, no queue, no database, embedding all the preprocessed posts in
  one call (it orders and batches them its best way: token-budget batches of
  length-sorted posts for torch, one post a run for onnx); measured before and
  after each pipeline phase, and the pipeline is compared with their mean, so
  a neighbour's load on the shared machine weighs on both sides alike;
- pipeline, single posts: one real `topicq worker` process (EMBEDDER=--embedder,
  default settings otherwise, embedding cache off) serving the default model
  (trainer.train.TrainConfig, fitted from the embedding cache in --home), the
  posts sent one message each through Redis (private queue) until every row is
  in a fresh PostgreSQL database (created here, dropped after). Each round's
  posts are queued while the worker is paused (SIGSTOP), a backlog as the
  services that send posts would leave from their own hosts; posts/s from its
  resumption to the last row, and its ratio to the raw rate (the producer's CPU,
  a column of its own, then does not take the worker's cores);
- pipeline, backfill chunks: the same posts again (other ids), sent as
  `topicq.classify_chunk` messages of BACKFILL_CHUNK posts, as `topicq backfill` sends them;
- the CPU per post in each phase of the worker, of PostgreSQL and Redis (on
  the same cores, so the pipeline's too) and of this process (the producer);
- the worker's peak RSS (VmHWM in /proc), and
  whether torch was ever mapped into it;
- optionally (--loads), latency from send to row at a few offered loads below
  capacity: p50/p95/p99; and (--torch) the torch encoder's raw rate.

    .venv/bin/python -m bench.throughput --groups sci --home /tmp/bench-home   # 600 posts
    .venv/bin/python -m bench.throughput --posts 1500 --loads 0.25,0.5,0.75 --torch

--home is created and its embedding cache migrated when missing (the first run
embeds the training posts into it). Gemini at 150 ms per call:
bench/gemini_throughput.py. Writes bench/results/throughput.json and .md (and
.png with --loads). Bounded: each phase has a deadline; the worker, database
and Redis keys are cleaned up on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import cpu_seconds, pids_named  # noqa: E402
from testkit.databases import ADMIN_URL, throwaway_database  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--posts", type=int, default=600, help="posts for the raw and each pipeline rate")
    p.add_argument("--batch-size", type=int, default=32, help="BATCH_SIZE: posts per embed call")
    p.add_argument("--batch-wait", type=float, default=1.0, help="BATCH_WAIT_S")
    p.add_argument("--chunk", type=int, default=64, help="posts per backfill chunk (BACKFILL_CHUNK)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per phase, raw and pipeline in turn")
    p.add_argument("--concurrency", type=int, default=2, help="the worker's threads (`topicq worker -c`)")
    p.add_argument("--torch", action="store_true", help="also the torch encoder's raw rate")
    p.add_argument("--embedder", default="local-onnx", help="EMBEDDER of the worker and the raw rate")
    p.add_argument("--cache", action="store_true", help="the worker's embedding cache on (default off)")
    p.add_argument("--loads", default="", help="offered loads for the latency, fractions of the single "
                   "posts' pipeline rate, e.g. 0.25,0.5,0.75 (default none)")
    p.add_argument("--level-seconds", type=float, default=30.0, help="sending time per load level")
    p.add_argument("--timeout", type=float, default=600.0, help="deadline (s) of each phase")
    p.add_argument("--home", default="/tmp/bench-home", help="TOPICQ_HOME with the embedding cache "
                   "(the model is fitted from it; see bench/accuracy.py)")
    p.add_argument("--groups", default="", help="20 Newsgroups groups the served model is trained on "
                   "(default all 20; e.g. sci when only those are in the embedding cache)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    p.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                   help="a setting of the worker besides the defaults (repeatable)")
    p.add_argument("--pg-admin-url", default=ADMIN_URL)
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def bench_posts(n: int) -> list[dict[str, Any]]:
    """`n` test posts of all 20 groups, spread over the groups, never seen in training."""
    from trainer.datasets import load_newsgroups

    data = load_newsgroups(subset="test")
    step = max(1, len(data) // n)
    picked = list(range(0, len(data), step))[:n]
    return [{"id": data.ids[i], "text": data.texts[i], "truth": data.labels[i]} for i in picked]


def embedding_cache_settings(home: str, kind: str) -> Any:
    """Settings whose database is --home's embedding cache: the folder made and the schema brought up
    to date when missing (a first run fills the cache)."""
    from shared.database.migrate import ensure_schema
    from shared.settings import Settings

    Path(home).mkdir(parents=True, exist_ok=True)
    settings = Settings(topicq_home=Path(home), database_url=None, embedder=kind)
    ensure_schema(settings.db_url)
    return settings


def register_default_model(db_url: str, models: Path, home: str, groups: tuple[str, ...],
                           kind: str) -> dict[str, Any]:
    """The default model (all 20 groups), fitted from cached embeddings, with a review calibration,
    registered and promoted."""
    from shared.model import registry
    from shared.model.preprocess import PREPROCESS_VERSION
    from shared.model.review_calibration import calibrate_review, class_indices
    from shared.model.store import ModelMeta, TopicModel
    from trainer.datasets import load_newsgroups
    from trainer.train import TrainConfig, data_fingerprint, fit_classifier, prepare_inputs

    cache_settings = embedding_cache_settings(home, kind)
    config = TrainConfig()
    train = load_newsgroups(subset="train", groups=groups)
    inputs, _, embedder_id, dim = prepare_inputs(cache_settings, config, train.texts, progress=False)
    classifier = fit_classifier(config, inputs, train.labels)
    meta = ModelMeta(name="topics", version=0, labels=list(map(str, classifier.classes_)),
                     embedder_id=embedder_id, embedder_dim=dim, preprocess_version=PREPROCESS_VERSION,
                     data_fingerprint=data_fingerprint(train),
                     created_at=datetime.now(UTC).isoformat(), hyperparameters=classifier.get_params())
    # A review calibration as `topicq train` saves one, so the worker computes the review distances too
    # (held out here: training posts, which only the flags' cost needs).
    held = inputs.take(slice(0, min(500, len(train))))
    held_probabilities = classifier.predict_proba(held.vectors, held.texts)
    review = calibrate_review(inputs.vectors, held_probabilities, held.vectors, held_out="training posts",
                              train_classes=class_indices(classifier.classes_, train.labels))
    registry.publish_version(db_url, models, TopicModel(meta, classifier, review=review),
                             promote_to=registry.DEFAULT_ALIAS)
    # What the classifier alone costs per post at serving time (one batch of 32, repeated).
    batch = inputs.take(slice(0, 32))
    classifier.predict_proba(batch.vectors, batch.texts)
    started = time.perf_counter()
    for _ in range(20):
        classifier.predict_proba(batch.vectors, batch.texts)
    classify_ms = 1000 * (time.perf_counter() - started) / (20 * len(batch.vectors))
    return {"embedder_id": embedder_id, "inputs": meta.inputs, "config": str(config),
            "classify_ms_per_post": round(classify_ms, 3),
            "trained_on": len(train), "classes": len(classifier.classes_)}


class RawEncoder:
    """The worker's embedder in this process, loaded once: its best rate on the texts, all in one call
    (batched its own best way), as often as asked."""

    def __init__(self, kind: str) -> None:
        from shared.model.embedders import make_embedder
        from shared.settings import Settings

        self.embedder = make_embedder(kind, Settings(embedder=kind))
        self.embedder.embed(["load the model first"])

    def measure(self, texts: list[str]) -> dict[str, Any]:
        started, cpu = time.perf_counter(), time.process_time()
        self.embedder.embed(texts)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        return {"texts": len(texts), "seconds": round(seconds, 2),
                "texts_per_s": round(len(texts) / seconds, 2),
                "cpu_ms_per_post": round(1000 * cpu / len(texts), 1), "embedder_id": self.embedder.id}


def measure_raw(texts: list[str], kind: str) -> dict[str, Any]:
    """The embedder's best rate: all the texts in one call, batched its own best way."""
    return RawEncoder(kind).measure(texts)


def maps_torch(pid: int) -> bool | None:
    """Whether libtorch is mapped into the process (None when it is gone)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return None


def rows_since(db_url: str, prefix: str) -> list[tuple[str, str, datetime, dict[str, Any] | None]]:
    from sqlalchemy import select

    from shared.database.connection import session_scope
    from shared.database.tables import Result

    with session_scope(db_url) as session:
        return [tuple(r) for r in session.execute(  # type: ignore[misc]
            select(Result.post_id, Result.status, Result.processed_at, Result.post_metadata)
            .where(Result.post_id.startswith(prefix)))]


def count_prefixed(db_url: str, prefix: str) -> int:
    from sqlalchemy import func, select

    from shared.database.connection import session_scope
    from shared.database.tables import Result

    with session_scope(db_url) as session:
        return int(session.scalar(select(func.count()).select_from(Result)
                                  .where(Result.post_id.startswith(prefix))) or 0)


def wait_rows(db_url: str, prefix: str, n: int, deadline: float) -> list[Any]:
    """The rows of the posts sent under `prefix` once there are `n` (or at the deadline). Polls a count,
    not the rows: the database's CPU is the worker's too."""
    while count_prefixed(db_url, prefix) < n and time.monotonic() < deadline:
        time.sleep(0.5)
    return rows_since(db_url, prefix)


def send(producer: Any, posts: list[dict[str, Any]], prefix: str, interval: float = 0.0) -> float:
    """Send each post (id prefixed), `interval` s apart; the metadata carries the send time."""
    started = time.monotonic()
    for i, post in enumerate(posts):
        if interval:
            delay = started + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        producer.send(producer.validate(f"{prefix}{post['id']}", post["text"],
                                        {"truth": post["truth"], "sent_at": time.time()}))
    return time.monotonic() - started


def send_chunks(producer: Any, posts: list[dict[str, Any]], prefix: str, size: int) -> float:
    """Send the posts (id prefixed) as backfill chunks of `size` posts, as `topicq backfill` does."""
    started = time.monotonic()
    for start in range(0, len(posts), size):
        chunk = posts[start:start + size]
        producer.send_chunk([producer.validate(f"{prefix}{p['id']}", p["text"], {"truth": p["truth"]})
                             for p in chunk])
    return time.monotonic() - started


def percentiles(values: list[float]) -> dict[str, float]:
    import numpy as np

    if not values:
        return {}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_s": round(float(p50), 3), "p95_s": round(float(p95), 3), "p99_s": round(float(p99), 3),
            "max_s": round(float(max(values)), 3), "mean_s": round(float(np.mean(values)), 3)}


def latencies(rows: list[Any]) -> list[float]:
    return [row[2].replace(tzinfo=UTC).timestamp() - float(row[3]["sent_at"]) for row in rows
            if row[3] and "sent_at" in row[3]]


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = results["latency"]
    if not levels:
        return
    x = [lv["offered_posts_per_s"] for lv in levels]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, style in (("p50_s", "o-"), ("p95_s", "s--"), ("p99_s", "^:")):
        ax.plot(x, [lv[key] for lv in levels], style, label=key[:3])
    ax.axvline(results["pipeline"]["single"]["posts_per_s"], color="grey", lw=0.8, ls="--", label="capacity")
    ax.set_xlabel("offered load (posts/s)")
    ax.set_ylabel("latency, send to row (s)")
    ax.set_title(f"{results['settings'].get('embedder', 'local')}, 1 worker, "
                 f"BATCH_SIZE {results['settings']['batch_size']}, "
                 f"BATCH_WAIT_S {results['settings']['batch_wait_s']:g}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


PHASES = {"single": "single-post messages", "chunks": "backfill chunks"}


def table(results: dict[str, Any]) -> str:
    s = results["settings"]
    lines = [
        "# Local-embedder throughput: the worker's pipeline against its encoder called directly", "",
        f"{results['when']} on {s['cores']} cores shared with other jobs (load average "
        f"{s['load_avg_at_start']:.1f} at start, {s.get('load_avg_at_end', 0):.1f} at end); "
        f"embedder `{results['raw_embedder_id']}`; model inputs {results['model']['inputs']} "
        f"({results['model']['classes']} classes); one worker ({s['concurrency']} thread"
        f"{'s' if s['concurrency'] > 1 else ''}), default settings (BATCH_SIZE "
        f"{s['batch_size']}, BATCH_WAIT_S {s['batch_wait_s']:g}, embedding cache "
        f"{'on' if s.get('cache') else 'off'}{''.join(', ' + item for item in s['worker_env'])}); "
        f"{s['posts']} 20 Newsgroups test posts per phase, backfill chunks of {s['chunk']}.", "",
        f"Raw: the same encoder on the same preprocessed texts in the benchmark's process, all in one "
        f"call. Each phase runs in {s['rounds']} rounds (a slice of the posts each), the raw encoder on "
        f"the slice's texts before each round and after the last; rates are posts over seconds summed "
        f"over the rounds. A round's posts are queued while the worker is paused, and its time runs from "
        f"the worker's resumption to the last row: the producer (its CPU in the last column) does not "
        f"share the worker's cores, as it would not from the hosts of the services that send posts.", "",
        "| messages | pipeline (posts/s) | raw (posts/s; each turn) | pipeline / raw | "
        "CPU ms/post worker / raw | CPU ms/post PostgreSQL + Redis / producer |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for phase, what in PHASES.items():
        pipe = results["pipeline"].get(phase)
        if not pipe:
            continue
        lines.append(f"| {what} | {pipe['posts_per_s']} | {pipe['raw_posts_per_s']} "
                     f"({' / '.join(map(str, pipe['raw_rounds']))}) | **{pipe['ratio']:.2f}** | "
                     f"{pipe['worker_cpu_ms_per_post']} / {pipe['raw_cpu_ms_per_post']} | "
                     f"{pipe.get('services_cpu_ms_per_post', '–')} / "
                     f"{pipe.get('producer_cpu_ms_per_post', '–')} |")
    lines += [
        "",
        "| measure | value |", "|---|---:|",
        f"| worker peak RSS (VmHWM) | {results.get('worker_peak_rss_mb', '–')} MB |",
        f"| torch mapped into the worker | {results.get('worker_maps_torch', '–')} |",
        f"| classifier alone (batch of 32) | {results['model']['classify_ms_per_post']} ms per post |",
    ]
    torch = results.get("raw_torch")
    if torch:
        lines.append(f"| raw torch encoder, same posts | {torch['texts_per_s']} posts/s |")
    if results["latency"]:
        lines += [
            "",
            "| offered load (posts/s) | share of capacity | posts | p50 (s) | p95 (s) | p99 (s) | max (s) |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for lv in results["latency"]:
            lines.append(f"| {lv['offered_posts_per_s']} | {lv['load']:.0%} | {lv['posts']} | "
                         f"{lv['p50_s']} | {lv['p95_s']} | {lv['p99_s']} | {lv['max_s']} |")
    lines += ["", "Gemini (fake API at 150 ms per call): see gemini_throughput.md "
              "(`python -m bench.gemini_throughput`)."]
    return "\n".join(lines) + "\n"


def run_phase(phase: str, *, raw: RawEncoder, texts: list[str], producer: Any, posts: list[dict[str, Any]],
              db: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """One pipeline phase in `args.rounds` rounds, each a slice of the posts, with the raw encoder on the
    same slice's texts before each round and after the last: a neighbour's load on the shared machine
    then weighs on both sides alike."""
    raws, sent_s, seconds, cpu, rows = [], 0.0, 0.0, 0.0, []
    services = pids_named("postgres", "redis-server")  # on the same cores: their CPU is the pipeline's too
    services_cpu, own_cpu = 0.0, 0.0
    size = -(-len(posts) // args.rounds)
    for n, start in enumerate(range(0, len(posts), size)):
        part, part_texts = posts[start:start + size], texts[start:start + size]
        raws.append(raw.measure(part_texts))
        prefix = f"{phase}{n}/"
        print(f"  round {n + 1}: sending {len(part)} posts", flush=True)
        cpu_before = cpu_seconds(pid)
        services_before, own_before = sum(map(cpu_seconds, services)), time.process_time()
        os.kill(pid, signal.SIGSTOP)  # the round's posts wait in Redis: a backlog, sent from elsewhere
        try:
            if phase == "single":
                sent_s += send(producer, part, prefix)
            else:
                sent_s += send_chunks(producer, part, prefix, args.chunk)
        finally:
            os.kill(pid, signal.SIGCONT)
        started_wall = time.time()
        part_rows = wait_rows(db, prefix, len(part), time.monotonic() + args.timeout)
        cpu += cpu_seconds(pid) - cpu_before
        services_cpu += sum(map(cpu_seconds, services)) - services_before
        own_cpu += time.process_time() - own_before
        part_s = (max(r[2] for r in part_rows).replace(tzinfo=UTC).timestamp() - started_wall if part_rows
                  else float("nan"))
        seconds += part_s
        rows += part_rows
        print(f"  round {n + 1}: raw {raws[-1]['texts_per_s']} posts/s, pipeline "
              f"{len(part_rows) / part_s:.1f} posts/s", flush=True)
    raws.append(raw.measure(texts[:size]))
    raw_rate = sum(r["texts"] for r in raws) / sum(r["seconds"] for r in raws)
    done = sum(r[1] == "done" for r in rows)
    pipe = {"posts": len(posts), "rows": len(rows), "done": done, "rounds": args.rounds,
            "seconds": round(seconds, 2), "posts_per_s": round(len(rows) / seconds, 2),
            "send_seconds": round(sent_s, 2),
            "worker_cpu_ms_per_post": round(1000 * cpu / max(1, len(rows)), 1),
            "services_cpu_ms_per_post": round(1000 * services_cpu / max(1, len(rows)), 2),
            "producer_cpu_ms_per_post": round(1000 * own_cpu / max(1, len(rows)), 2),
            "raw_posts_per_s": round(raw_rate, 2), "raw_rounds": [r["texts_per_s"] for r in raws],
            "raw_cpu_ms_per_post": round(sum(r["cpu_ms_per_post"] * r["texts"] for r in raws)
                                         / sum(r["texts"] for r in raws), 1),
            "complete": done == len(posts)}
    pipe["ratio"] = round(pipe["posts_per_s"] / raw_rate, 3)
    return pipe


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-ups below
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from shared.model.preprocess import preprocess
    from shared.settings import Settings
    from shared.wire.producer import Producer
    from testkit.worker_process import WorkerProcess

    loads = [float(v) for v in args.loads.split(",") if v.strip()]
    queue = f"topicq-bench-{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": {"posts": args.posts, "batch_size": args.batch_size, "batch_wait_s": args.batch_wait,
                     "chunk": args.chunk, "rounds": args.rounds, "concurrency": args.concurrency,
                     "embedder": args.embedder,
                     "cache": args.cache,
                     "worker_env": args.worker_env, "groups": args.groups,
                     "loads": loads, "level_seconds": args.level_seconds, "cores": os.cpu_count(),
                     "load_avg_at_start": os.getloadavg()[0]},
        "pipeline": {}, "latency": [],
    }
    posts = bench_posts(args.posts + args.batch_size)
    warmup, posts = posts[: args.batch_size], posts[args.batch_size:]
    ok = True
    with (tempfile.TemporaryDirectory(prefix="topicq-bench-") as tmp,
          throwaway_database(args.pg_admin_url, "topicq_bench") as db):
        env = {"DATABASE_URL": db, "REDIS_URL": args.redis_url, "QUEUE": queue, "EMBEDDER": args.embedder,
               "CACHE_EMBEDDINGS": "true" if args.cache else "false",
               "BATCH_SIZE": str(args.batch_size), "BATCH_WAIT_S": str(args.batch_wait),
               "MODEL_DIR": f"{tmp}/models", "TOPICQ_HOME": f"{tmp}/home", "MODEL_REFRESH_S": "60",
               **dict(item.split("=", 1) for item in args.worker_env)}
        print("fitting the default model from the embedding cache ...", flush=True)
        results["model"] = register_default_model(
            db, Path(f"{tmp}/models"), args.home, tuple(g for g in args.groups.split(",") if g),
            args.embedder)
        texts = [preprocess(p["text"]) for p in posts]
        raw = RawEncoder(args.embedder)
        results["raw_embedder_id"] = raw.embedder.id
        if args.torch and args.embedder != "local":
            print(f"raw torch encoder, same posts: {len(posts)} posts ...", flush=True)
            results["raw_torch"] = measure_raw(texts, "local")
            print(f"  {results['raw_torch']}", flush=True)
        os.environ.update({k: v for k, v in env.items() if k in ("REDIS_URL", "QUEUE")})
        producer = Producer(Settings(redis_url=args.redis_url, queue=queue))
        worker = WorkerProcess(env, Path(tmp) / "worker.log", concurrency=args.concurrency)
        try:
            worker.start(timeout=180)
            pid = worker.process.pid if worker.process else 0
            results["worker_pid"] = pid
            send(producer, warmup, "warm/")
            wait_rows(db, "warm/", len(warmup), time.monotonic() + args.timeout)
            for phase, what in PHASES.items():
                print(f"pipeline, {what}: {len(posts)} posts ...", flush=True)
                pipe = run_phase(phase, raw=raw, texts=texts, producer=producer, posts=posts, db=db, pid=pid,
                                 args=args)
                results["pipeline"][phase] = pipe
                ok = ok and pipe["complete"]
                print(f"  {pipe['posts_per_s']} posts/s, ratio {pipe['ratio']}, worker CPU "
                      f"{pipe['worker_cpu_ms_per_post']} ms/post", flush=True)
            single_rate = results["pipeline"]["single"]["posts_per_s"]
            for n, load in enumerate(loads):
                rate = load * single_rate
                count = max(10, int(rate * args.level_seconds))
                level_posts = [posts[i % len(posts)] for i in range(count)]
                prefix = f"lat{n}/"
                print(f"latency at {rate:.1f} posts/s ({load:.0%}): {count} posts ...", flush=True)
                send(producer, level_posts, prefix, interval=1.0 / rate)
                level_rows = wait_rows(db, prefix, count, time.monotonic() + args.timeout)
                level = {"load": load, "offered_posts_per_s": round(rate, 2), "posts": count,
                         "rows": len(level_rows), **percentiles(latencies(level_rows))}
                results["latency"].append(level)
                ok = ok and len(level_rows) == count
                print(f"  {level}", flush=True)
            results["worker_peak_rss_mb"] = peak_rss_mb(pid)
            results["worker_maps_torch"] = maps_torch(pid)
        finally:
            worker.stop()
            producer.close()
            _drop_redis_keys(args.redis_url, queue)
            results["settings"]["load_avg_at_end"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    if results["pipeline"]:
        (args.out / "throughput.md").write_text(table(results))
        print(table(results))
    if results["latency"]:
        chart(results, args.out / "throughput.png")
    return 0 if ok else 1


def _drop_redis_keys(url: str, queue: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = [k for pattern in (f"{queue}*", "unacked*", "_kombu.binding.*")
                for k in client.scan_iter(match=pattern, count=1000)]
        if keys:
            client.delete(*keys)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
