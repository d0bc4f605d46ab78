"""Run real `topicq worker` processes for integration tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select

from shared.db import session_scope
from shared.results import Result


def worker_env(db_url: str, redis_url: str, home: Path, **overrides: str) -> dict[str, str]:
    """Settings of a test worker: a queue of its own (concurrent runs never share one), small
    batches, and timeouts short enough for redelivery and retries to happen within seconds."""
    env = {
        "DATABASE_URL": db_url, "REDIS_URL": redis_url, "EMBEDDER": "fake",
        "MODEL_DIR": str(home / "models"), "TOPICQ_HOME": str(home / "home"),
        "QUEUE": f"topicq-test-{uuid.uuid4().hex[:8]}",
        "BATCH_SIZE": "16", "BATCH_WAIT_S": "0.3",
        "VISIBILITY_TIMEOUT_S": "8", "MODEL_REFRESH_S": "0.5",
        "RETRY_BASE_S": "0.2", "RETRY_MAX_S": "1",
    }
    env.update(overrides)
    return env


class WorkerProcess:
    """A `topicq worker` subprocess with its own environment; logs go to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, concurrency: int = 1) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.concurrency = concurrency
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "worker", "-c", str(self.concurrency),
             "-n", f"test{time.monotonic_ns()}@%h"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited {self.process.returncode}:\n{self.log()}")
            if "ready." in self.log():
                return self
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, nothing acknowledged or restored by the worker itself."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def count_rows(db_url: str, **filters: object) -> int:
    with session_scope(db_url) as session:
        query = select(func.count()).select_from(Result)
        for name, value in filters.items():
            query = query.where(getattr(Result, name) == value)
        return int(session.scalar(query) or 0)


def wait_for_rows(db_url: str, expected: int, timeout: float, **filters: object) -> int:
    deadline = time.monotonic() + timeout
    count = count_rows(db_url, **filters)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        count = count_rows(db_url, **filters)
    return count
