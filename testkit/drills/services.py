"""Private Redis and PostgreSQL servers that a drill may stop, kill and restart.

The shared instances on 6379 / 5432 are never touched: each drill starts its
own on a free port in a temporary folder, and removes it afterwards.

    with PrivateRedis(aof=True) as broker:      # redis-server --appendonly yes --appendfsync always
        broker.restart(down_s=2, hard=True)     # SIGKILL, wait, start again on the same port and data
    with PrivatePostgres() as db:               # initdb + pg_ctl, run as the `postgres` user when root
        db.stop(); ...; db.start()
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from testkit.databases import ADMIN_URL, DatabaseUnreachable, throwaway_database

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


class ServiceUnavailable(RuntimeError):
    """A binary or service the drill needs is missing (tests skip locally, fail in CI)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s")


class PrivateRedis:
    """A redis-server of the drill's own; AOF with fsync on every write when `aof`."""

    def __init__(self, *, aof: bool = True, password: str | None = None, port: int | None = None) -> None:
        if shutil.which("redis-server") is None:
            raise ServiceUnavailable("redis-server is not installed")
        self.aof = aof
        self.password = password
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="drill-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--logfile", str(self.dir / "redis.log"), "--daemonize", "no"]
        if self.aof:
            # Plain commands, never rewritten: a drill can read the whole history back (aof.py).
            args += ["--appendonly", "yes", "--appendfsync", "always", "--aof-use-rdb-preamble", "no",
                     "--auto-aof-rewrite-percentage", "0"]
        else:
            args += ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(self.ping, 15, f"redis on port {self.port}")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url(), socket_timeout=2)

    def ping(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except Exception:  # noqa: BLE001 - not up (yet)
            return False

    def stop(self, *, hard: bool = False) -> None:
        """SIGKILL when `hard` (a crash: only what the AOF fsynced survives), else SIGTERM."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            self.process.wait(timeout=30)

    def restart(self, *, down_s: float = 1.0, hard: bool = False) -> None:
        self.stop(hard=hard)
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    def close(self) -> None:
        self.stop(hard=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def aof_files(self) -> list[Path]:
        """The append-only files in the order Redis replays them (base, then increments)."""
        folder = self.dir / "appendonlydir"
        manifest = next(folder.glob("*.manifest"), None) if folder.exists() else None
        if manifest is None:
            return []
        names = [line.split()[1] for line in manifest.read_text().splitlines() if line.startswith("file ")]
        return [folder / name for name in names]

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class PrivatePostgres:
    """A PostgreSQL cluster of the drill's own (initdb + pg_ctl), trust auth, database `drill`."""

    def __init__(self, *, port: int | None = None) -> None:
        if not (PG_BIN / "initdb").exists():
            raise ServiceUnavailable(f"PostgreSQL binaries not found in {PG_BIN} (set PG_BIN)")
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="drill-pg-"))
        self.data = self.root / "data"
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb refuses to run as root
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceUnavailable("running as root and there is no `postgres` user for initdb") from None
            self.user = "postgres"
            shutil.chown(self.root, user="postgres")
        self.outages = 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/drill"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:1])} failed ({done.returncode}): {done.stderr or done.stdout}")

    def init(self) -> PrivatePostgres:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                  "-E", "UTF8", "--locale", "C")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "drill")
        return self

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                   "-c max_connections=60 -c shared_buffers=32MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-w",
                  "-t", "60", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` closes connections cleanly; `immediate` is a crash (recovery at the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def outage(self, seconds: float, mode: str = "fast") -> None:
        self.stop(mode)
        time.sleep(seconds)
        self.start()
        self.outages += 1

    def close(self) -> None:
        try:
            self.stop("immediate")
        except Exception:  # noqa: BLE001 - already down
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        try:
            return self.init()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def fresh_database(admin_url: str = ADMIN_URL) -> Iterator[str]:
    """A new database on the shared PostgreSQL, dropped afterwards."""
    try:
        with throwaway_database(admin_url, "topicq_drill") as url:
            yield url
    except DatabaseUnreachable as exc:
        raise ServiceUnavailable(str(exc)) from None
