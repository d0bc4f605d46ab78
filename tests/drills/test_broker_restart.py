"""Given posts flowing through a Redis with AOF, when Redis is killed and started again, then the
worker and the producer reconnect by themselves and every post gets exactly one row."""

from __future__ import annotations

import time
from pathlib import Path

from shared.wire.producer import Producer
from testkit.drills import broker
from testkit.drills.harness import base_env, prepare_database, settings_for, wait_for
from testkit.drills.services import PrivateRedis, ServiceUnavailable, fresh_database
from testkit.factories import make_posts
from testkit.missing_services import service_missing
from testkit.worker_process import WorkerProcess, count_rows


def test_broker_crash_and_restart_loses_nothing(drill) -> None:
    result = drill(broker.run, broker.BrokerSize(posts=300, send_s=8, first_at_s=2, restarts=1, down_s=2))
    extra = result.extra
    assert extra["alive"] and extra["reconnects"] >= 2, result.describe()
    assert not extra["errors"], result.describe()
    assert result.lost == 0 and result.duplicates == 0, result.describe()
    assert result.statuses.get("done") == 300, result.describe()
    assert result.failures == [], result.describe()


def test_a_short_tail_is_flushed_after_the_broker_comes_back(tmp_path: Path) -> None:
    """Celery drops the event loop's timers on a reconnect; the batch flush timer must start again,
    or posts fewer than a batch would wait in the buffer forever."""
    try:
        with PrivateRedis(aof=True) as redis_server, fresh_database() as db_url:
            env = base_env(db_url=db_url, redis_url=redis_server.url(), workdir=tmp_path,
                           BATCH_SIZE="16", BATCH_WAIT_S="2")
            settings = settings_for(env)
            prepare_database(db_url, settings.models_path)
            worker = WorkerProcess(env, tmp_path / "tail.log")
            worker.start()
            try:
                before, after = make_posts(2, "before"), make_posts(2, "after")
                producer = Producer(settings)
                for post in before:  # buffered, the flush timer armed
                    producer.send(producer.validate(post["id"], post["text"]))
                producer.close()
                time.sleep(1.0)  # the worker takes them into its buffer; the flush is 2 s away
                redis_server.stop(hard=True)
                redis_server.start()
                producer = Producer(settings)
                for post in after:
                    producer.send(producer.validate(post["id"], post["text"]))
                producer.close()
                rows = wait_for(db_url, 4, timeout=60, stall_s=30)
            finally:
                worker.stop()
            assert rows == 4 and count_rows(db_url) == 4, worker.all_logs()[-3000:]
    except ServiceUnavailable as exc:
        service_missing("a drill service", exc)
        raise
