"""Drill 4: a 429 storm — half the Gemini calls refused with 429 RetryInfo, a tenth with 5xx.

A real worker embeds through google-genai against the fake Gemini API. Every
post must end `done`: 429s are waited out (RetryInfo.retryDelay) or sent
back to the queue, 5xx retried by the SDK and then by the pipeline. The
worker logs at DEBUG, and the API key must appear in none of its lines.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from testkit.drills.harness import (
    DrillResult,
    base_env,
    common_failures,
    install_ledger,
    ledger,
    settings_for,
    settle,
    start_sender,
)
from testkit.drills.services import PrivateRedis, fresh_database
from testkit.factories import make_posts
from testkit.worker_process import WorkerProcess


@dataclass
class StormSize:
    posts: int = 300
    send_s: float = 8.0
    rate_429: float = 0.5
    rate_5xx: float = 0.1
    rate_malformed: float = 0.0  # replies cut off mid-JSON
    retry_delay_s: float = 0.5  # the RetryInfo.retryDelay the fake asks for
    latency_ms: float = 20.0
    seed: int = 0


def register_gemini_model(db_url: str, model_dir: Path, key: str, base_url: str) -> int:
    """A model trained on the fake Gemini's vectors, registered under the gemini embedder id."""
    from shared.database.migrate import upgrade
    from shared.model.embedders.gemini import GeminiEmbedder
    from testkit.factories import register_fake_model

    upgrade(db_url)
    install_ledger(db_url)
    gemini = GeminiEmbedder(key, base_url=base_url, retries=0, timeout_s=10)
    try:
        return register_fake_model(db_url, model_dir, embedder=gemini)
    finally:
        gemini.close()


def run(size: StormSize, workdir: Path) -> DrillResult:
    from testkit.fake_gemini import running_fake_gemini

    key = f"AIzaSyDRILL-{uuid.uuid4().hex}"  # unique: finding it anywhere is a leak
    with (running_fake_gemini(api_key=key, latency_ms=size.latency_ms, retry_delay_s=size.retry_delay_s,
                              seed=size.seed) as fake,
          PrivateRedis(aof=False) as broker, fresh_database() as db_url):
        env = base_env(db_url=db_url, redis_url=broker.url(), workdir=workdir, EMBEDDER="gemini",
                       GEMINI_API_KEY=key, GEMINI_BASE_URL=fake.base_url, GEMINI_TIMEOUT_S="5",
                       GEMINI_RETRIES="2", GEMINI_RPM="1000000", BATCH_SIZE="16")
        settings = settings_for(env)
        register_gemini_model(db_url, settings.models_path, key, fake.base_url)
        fake.calls.clear()
        fake.switches.rate_429, fake.switches.rate_5xx = size.rate_429, size.rate_5xx
        fake.switches.rate_malformed = size.rate_malformed
        posts = make_posts(size.posts, "storm", size.seed)
        worker = WorkerProcess(env, workdir / "storm.log", worker_args=("-l", "DEBUG"), cli_args=("-v",))
        worker.start()
        started = time.time()
        sender, errors = start_sender(settings, posts, size.send_s)
        try:
            sender.join()
            alive, left = settle(worker, settings, size.posts, timeout=120 + size.posts / 10, stall_s=45)
        finally:
            worker.stop()
        book = ledger(db_url, [str(p["id"]) for p in posts])
        outcomes = fake.outcomes()
        from shared.database.connection import session_scope
        from shared.database.tables import Result

        with session_scope(db_url) as session:
            from sqlalchemy import select

            errors_in_rows = [e for e in session.scalars(select(Result.error)) if e and key in e]
    log = worker.all_logs()
    leaks = log.count(key) + len(errors_in_rows)
    faults = outcomes.get("429", 0) + outcomes.get("5xx", 0) + outcomes.get("malformed", 0)
    notes = [f"fake Gemini calls by outcome: {dict(sorted(outcomes.items()))}",
             f"worker alive at the end: {alive}; left in Redis: {left}",
             f"API key found {leaks} times in {len(log.splitlines())} DEBUG log lines and the result rows"]
    notes += errors[:5]
    failures = common_failures(alive=alive, left=left, errors=errors, log=log)
    if leaks:
        failures.append(f"the API key leaked {leaks} times")
    if set(book.statuses) - {"done"}:
        failures.append(f"posts not done: {book.statuses}")
    return DrillResult("429-storm", size.posts, f"{faults} injected errors ({outcomes.get('429', 0)} x 429)",
                       len(book.lost), book.duplicates, book.reprocessed, book.wall_since(started),
                       book.statuses, notes, failures=failures,
                       extra={"alive": alive, "left": left, "errors": errors, "leaks": leaks,
                              "outcomes": outcomes})
