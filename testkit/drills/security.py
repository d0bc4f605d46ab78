"""Drill 6: security checks that need real services.

- a pickled message is refused (also in tests/integration/test_end_to_end.py), here on a
  password-protected Redis;
- Redis with a password works end to end and the password appears in no worker log line;
- a model whose files changed after registration is refused at load, and a worker will not
  start on it (nor switch to it when it is promoted);
- `topicq results` / `topicq stats` filters are bound parameters: injection attempts return
  nothing and change nothing.
(The API key staying out of DEBUG logs and rows is checked by the 429-storm drill.)
"""

from __future__ import annotations

import pickle
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from shared.database.connection import session_scope
from shared.database.tables import Result
from testkit.drills.harness import (
    DrillResult,
    base_env,
    common_failures,
    ledger,
    prepare_database,
    problems_in_log,
    settings_for,
    settle,
    start_stage,
    stream,
)
from testkit.drills.services import PrivateRedis, fresh_database
from testkit.factories import make_posts
from testkit.worker_process import WorkerProcess

INJECTIONS = [
    ["results", "--label", "x' OR '1'='1"],
    ["results", "--label", "x'; DROP TABLE results; --"],
    ["results", "--label", "x\" OR \"1\"=\"1"],
    ["results", "--model", "topics' OR '1'='1"],
    ["results", "--model", "topics:1 OR 1=1"],
    ["results", "--status", "done' OR '1'='1"],
    ["results", "--label", "%", "--format", "jsonl"],
    ["stats", "--model", "x' OR 'a'='a"],
    ["stats", "--model", "topics'; DELETE FROM results; --", "--format", "json"],
]


@dataclass
class SecuritySize:
    posts: int = 200
    send_s: float = 4.0


def password_redis(size: SecuritySize, workdir: Path) -> dict[str, Any]:
    """Posts through a Redis that needs a password, plus one pickled message; the password stays out of logs."""
    from shared.wire.protocol import CLASSIFY_TASK
    from testkit.wire import raw_message

    password = f"drill-pw-{secrets.token_hex(8)}"
    with PrivateRedis(aof=False, password=password) as broker, fresh_database() as db_url:
        stage = start_stage(db_url=db_url, redis_url=broker.url(), workdir=workdir, log_name="password.log",
                            worker_args=("-l", "DEBUG"), cli_args=("-v",))
        settings, worker = stage.settings, stage.worker
        posts = make_posts(size.posts, "pw")
        errors: list[str] = []
        started = time.time()
        try:
            evil = pickle.dumps(([], {"id": "pickled", "text": "rocket orbit"}, {}))
            with broker.client() as client:
                client.lpush(settings.queue, raw_message(CLASSIFY_TASK, {}, settings.queue,
                                                         content_type="application/x-python-serialize",
                                                         body=evil))
            stream(settings, posts, size.send_s, 0, errors)
            alive, left = settle(worker, settings, size.posts, timeout=90, stall_s=30)
        finally:
            worker.stop()
        book = ledger(db_url, [str(p["id"]) for p in posts])
        # Without the password nothing gets in.
        import redis

        try:
            redis.Redis(port=broker.port).ping()
            open_door = True
        except redis.AuthenticationError:
            open_door = False
    log = worker.all_logs()
    return {"book": book, "alive": alive, "left": left, "errors": errors, "open_door": open_door,
            "password_in_log": log.count(password), "pickled_row": "pickled" in book.by_id,
            "pickle_refused_in_log": "only JSON is accepted" in log,
            "problems": problems_in_log(log), "wall": book.wall_since(started), "log_lines": len(log.splitlines())}


def tampered_model(workdir: Path) -> dict[str, Any]:
    """Change model files after registration: loading refuses them, a worker will not start on them."""
    from shared.errors import ModelError
    from shared.model import registry
    from shared.model.embedders.fake import FakeEmbedder
    from shared.model.store import META_FILE, MODEL_FILE
    from testkit.factories import register_fake_model
    from worker.served_model import ServedModel

    found: dict[str, Any] = {}
    with fresh_database() as db_url:
        env = base_env(db_url=db_url, redis_url="redis://127.0.0.1:1/0", workdir=workdir)
        settings = settings_for(env)
        good = prepare_database(db_url, settings.models_path)
        server = ServedModel(db_url, name="topics", alias="production", embedder=FakeEmbedder(), refresh_s=0)
        assert server.current().meta.version == good
        # A second version whose weights change after registration, then promoted
        bad = register_fake_model(db_url, settings.models_path, seed=1, promote=False)
        weights = Path(registry.get_version(db_url, name="topics", version=bad).path) / MODEL_FILE
        blob = bytearray(weights.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        weights.write_bytes(bytes(blob))
        try:
            registry.load(db_url, name="topics", version=bad)
            found["weights_refused"] = False
        except ModelError as exc:
            found["weights_refused"] = "changed since registration" in str(exc)
        registry.promote(db_url, name="topics", version=bad)
        found["server_kept_good_version"] = server.current().meta.version == good
        # The metadata of the first version edited too (labels swapped): a fresh worker must refuse
        meta = Path(registry.get_version(db_url, name="topics", version=good).path) / META_FILE
        meta.write_text(meta.read_text().replace('"crypto"', '"CRYPTO"'))
        registry.promote(db_url, name="topics", version=good)
        try:
            ServedModel(db_url, name="topics", alias="production", embedder=FakeEmbedder()).current()
            found["meta_refused"] = False
        except ModelError as exc:
            found["meta_refused"] = "changed since registration" in str(exc)
        worker = WorkerProcess(env, workdir / "tampered.log")
        try:
            worker.start(timeout=90)
            found["worker_refused"] = False
            worker.kill()
        except RuntimeError as exc:
            found["worker_refused"] = "changed since registration" in str(exc) and "ready." not in str(exc)
    return found


def injections(workdir: Path) -> dict[str, Any]:
    """Injection attempts through `topicq results` / `stats` on PostgreSQL: no rows, no change."""
    import json
    import os

    from click.testing import CliRunner

    from cli.main import main
    from shared.database.results import DONE, ResultRow, write_rows
    from shared.settings import get_settings

    outcome: dict[str, Any] = {"attempts": len(INJECTIONS), "leaked": [], "changed": False, "crashed": []}
    with fresh_database() as db_url:
        prepare_database(db_url, workdir / "models")
        write_rows(db_url, [ResultRow(post_id=f"s-{i}", model_name="topics", model_version=1, status=DONE,
                                      label=["space", "crypto"][i % 2], score=0.9) for i in range(20)])
        before = _fingerprint(db_url)
        saved = os.environ.get("DATABASE_URL")
        os.environ["DATABASE_URL"] = db_url
        get_settings.cache_clear()
        try:
            runner = CliRunner()
            for args in INJECTIONS:
                result = runner.invoke(main, args)
                if result.exception is not None and not isinstance(result.exception, SystemExit):
                    outcome["crashed"].append(f"{args}: {result.exception!r}")
                lines = [line for line in result.output.splitlines() if "s-" in line]
                if args[0] == "stats" and result.exit_code == 0:
                    total = json.loads(result.output)["total"] if "--format" in args else \
                        int(result.output.split()[2])
                    lines = ["stats total"] if total else []
                if lines:
                    outcome["leaked"].append(f"{args}: {len(lines)} rows")
        finally:
            if saved is None:
                os.environ.pop("DATABASE_URL", None)
            else:
                os.environ["DATABASE_URL"] = saved
            get_settings.cache_clear()
        outcome["changed"] = _fingerprint(db_url) != before
        from shared.database.connection import get_engine

        get_engine(db_url).dispose()
    return outcome


def _fingerprint(db_url: str) -> tuple[int, str, bool]:
    with session_scope(db_url) as session:
        count = session.scalar(select(func.count()).select_from(Result)) or 0
        digest = session.execute(text("SELECT md5(string_agg(post_id || label, ',' ORDER BY post_id)) "
                                      "FROM results")).scalar()
        tables = session.execute(text("SELECT count(*) FROM pg_tables WHERE tablename = 'results'")).scalar()
    return int(count), str(digest), bool(tables)


def run(size: SecuritySize, workdir: Path) -> DrillResult:
    redis_found = password_redis(size, workdir / "redis")
    model_found = tampered_model(workdir / "model")
    sql_found = injections(workdir / "sql")
    book = redis_found["book"]
    notes = [
        f"password Redis: {size.posts} posts, worker alive {redis_found['alive']}, "
        f"password in {redis_found['password_in_log']} of {redis_found['log_lines']} DEBUG log lines, "
        f"unauthenticated client refused: {not redis_found['open_door']}",
        f"pickled message refused: {redis_found['pickle_refused_in_log'] and not redis_found['pickled_row']}",
        f"tampered model: {model_found}",
        f"injection attempts: {sql_found['attempts']}, rows leaked {sql_found['leaked']}, "
        f"database changed {sql_found['changed']}, crashes {sql_found['crashed']}",
    ]
    failures = common_failures(alive=redis_found["alive"], left=redis_found["left"],
                               errors=redis_found["errors"], log="")
    failures += [f"log: {line[:300]}" for line in redis_found["problems"][:5]]
    if redis_found["password_in_log"]:
        failures.append("the Redis password is in the worker log")
    if redis_found["open_door"]:
        failures.append("Redis answered without the password")
    if redis_found["pickled_row"] or not redis_found["pickle_refused_in_log"]:
        failures.append("the pickled message was not refused")
    failures += [f"tampered model: {check} did not hold" for check, held in model_found.items() if not held]
    if sql_found["leaked"] or sql_found["changed"] or sql_found["crashed"]:
        failures.append(f"injection: {sql_found}")
    if set(book.statuses) - {"done"}:
        failures.append(f"posts not done: {book.statuses}")
    faults = (f"1 pickled message, 2 tampered model files, {sql_found['attempts']} injection attempts, "
              "password-protected Redis")
    return DrillResult("security", size.posts, faults, len(book.lost), book.duplicates, book.reprocessed,
                       redis_found["wall"], book.statuses, notes, failures=failures,
                       extra={"redis": {k: v for k, v in redis_found.items() if k != "book"},
                              "model": model_found, "sql": sql_found})
