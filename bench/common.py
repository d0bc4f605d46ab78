"""Helpers the benchmarks share: the fake Gemini in its own process, CPU meters.

The fake runs in a child process so that its JSON work does not share the
benchmark's interpreter lock with the producer; the benchmark steers it
(switch faults on and off, read the calls it saw) through a pipe.
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import asdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


def _serve(conn: Connection, switches: dict[str, Any]) -> None:
    from testkit.fake_gemini import FakeGemini

    fake = FakeGemini(**switches).start()
    conn.send(fake.base_url)
    try:
        while True:
            command, argument = conn.recv()
            if command == "set":
                for name, value in argument.items():
                    setattr(fake.switches, name, value)
                conn.send(None)
            elif command == "calls":  # the calls so far, and forget them
                with fake._lock:
                    calls, fake.calls = fake.calls, []
                conn.send([asdict(call) for call in calls])
            else:
                break
    finally:
        fake.stop()


class FakeGeminiProcess:
    """`FakeGemini` in a child process: `base_url`, `set(**switches)`, `take_calls()`."""

    def __init__(self, **switches: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, switches), daemon=True,
                                        name="fake-gemini")

    def __enter__(self) -> FakeGeminiProcess:
        self._process.start()
        if not self._conn.poll(60):
            raise TimeoutError("the fake Gemini did not start within 60 s")
        self.base_url: str = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._conn.send(("stop", None))
        except OSError:
            pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    @property
    def pid(self) -> int:
        return int(self._process.pid or 0)

    def set(self, **switches: Any) -> None:
        self._conn.send(("set", switches))
        self._conn.recv()

    def take_calls(self) -> list[dict[str, Any]]:
        self._conn.send(("calls", None))
        calls: list[dict[str, Any]] = self._conn.recv()
        return calls


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_named(*names: str) -> list[int]:
    """Processes whose command name is one of `names` (e.g. postgres, redis-server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class CpuMeter:
    """CPU seconds spent by named groups of processes between `start()` and `stop()`.

    A process that ends in between is left out (its last CPU time is unknown), so a group's
    figure is a lower bound, never negative.
    """

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._before: dict[int, float] = {}
        self._machine = 0.0

    def start(self) -> None:
        self._before = {pid: cpu_seconds(pid) for pids in self.groups.values() for pid in pids}
        self._machine = _machine_busy()

    def stop(self) -> dict[str, float]:
        used = {}
        for name, pids in self.groups.items():
            spent = 0.0
            for pid in pids:
                now = cpu_seconds(pid)
                if now > 0.0:  # 0: the process is gone
                    spent += now - self._before.get(pid, 0.0)
            used[name] = round(spent, 2)
        used["whole machine"] = round(_machine_busy() - self._machine, 2)
        return used


def _machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all cores, every user)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
