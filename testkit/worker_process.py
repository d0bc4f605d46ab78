"""Run real `topicq worker` processes (tests, drills, benchmarks) and count their rows.

The process itself is cli/worker_process.py's, the one the demo runs; here it gets a clean
environment, a unique name and a new log at each (re)start."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from cli import worker_process as cli_worker_process
from shared.database.results import count_rows


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
        # Many test workers run at once on one host: no exporter unless a test gives a port.
        "METRICS_PORT": "0",
    }
    env.update(overrides)
    return env


def clean_environment() -> dict[str, str]:
    """os.environ without the settings a developer's shell may carry into a worker."""
    drop = {"DATABASE_URL", "REDIS_URL", "GEMINI_API_KEY", "GEMINI_API_KEY_FILE", "EMBEDDER",
            "GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_API_KEY", "QUEUE", "MODEL_DIR"}
    return {k: v for k, v in os.environ.items() if k not in drop}


class WorkerProcess(cli_worker_process.WorkerProcess):
    """A `topicq worker` subprocess with the settings in `env` (on top of a clean environment).

    Each start logs to a new file (`log_path`, then `<stem>-2.log`, ...), so a restart waits for
    its own `ready.`. `hostname` defaults to a unique one: two workers must never share a name.
    """

    def __init__(self, env: dict[str, str], log_path: Path, concurrency: int = 1, *,
                 hostname: str | None = None, worker_args: tuple[str, ...] = (),
                 cli_args: tuple[str, ...] = ()) -> None:
        super().__init__({**clean_environment(), "PYTHONPATH": cli_worker_process.code_path(), **env},
                         log_path, concurrency, worker_args=worker_args, cli_args=cli_args)
        self.first_log = log_path
        self.given_hostname = hostname
        self.logs: list[Path] = []

    def start(self, timeout: float = 120) -> WorkerProcess:
        starts = len(self.logs) + 1
        self.log_path = self.first_log.with_stem(self.first_log.stem + (f"-{starts}" if starts > 1 else ""))
        self.logs.append(self.log_path)
        self.hostname = self.given_hostname or f"{self.first_log.stem}{time.monotonic_ns()}@%h"
        super().start(timeout)
        return self

    @property
    def starts(self) -> int:
        return len(self.logs)

    def all_logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.logs if path.exists())


def wait_for_rows(db_url: str, expected: int, timeout: float, **filters: Any) -> int:
    deadline = time.monotonic() + timeout
    count = count_rows(db_url, **filters)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        count = count_rows(db_url, **filters)
    return count
