"""A `topicq worker` in a child process that logs to a file: started, waited for until it says
`ready.`, stopped. The demo runs its worker with it (tests and drills build on it in testkit)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# The topicq package's folder: the worker imports the same code as the process that starts it.
CODE_ROOT = Path(__file__).resolve().parents[1]
READY = "ready."  # what `topicq worker` logs once it takes messages


def code_path() -> str:
    """PYTHONPATH for the child: CODE_ROOT first, then this process's own PYTHONPATH."""
    return os.pathsep.join(filter(None, [str(CODE_ROOT), os.environ.get("PYTHONPATH")]))


class WorkerProcess:
    """`topicq worker` with the environment `env` (PYTHONPATH defaults to code_path()), its output
    in `log_path`."""

    def __init__(self, env: dict[str, str], log_path: Path, concurrency: int = 1, *,
                 hostname: str = "topicq@%h", worker_args: tuple[str, ...] = (),
                 cli_args: tuple[str, ...] = ()) -> None:
        self.env = {"PYTHONPATH": code_path(), **env}
        self.log_path = log_path
        self.concurrency = concurrency
        self.hostname = hostname
        self.worker_args = worker_args
        self.cli_args = cli_args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> WorkerProcess:
        """Start it and wait until it is ready; RuntimeError when it exits first, TimeoutError when
        it is not ready in time (both end with the log's tail)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *self.cli_args, "worker", "-c", str(self.concurrency),
                 "-n", self.hostname, *self.worker_args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited {self.process.returncode}:\n{self.log()[-4000:]}")
            if READY in self.log():
                return self
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        """The log of the latest start."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, nothing acknowledged or restored by the worker itself."""
        if self.process and self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (a warm shutdown), SIGKILL when it has not ended within 30 s."""
        if self.process and self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
