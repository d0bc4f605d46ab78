"""The heartbeat file, the worker check of `topicq health`, and /healthz, without a worker."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cli.health import check_database, check_worker
from worker.exporter import start_exporter
from worker.heartbeat import Heartbeat


def test_the_worker_check_wants_a_fresh_heartbeat_naming_a_model(tmp_path: Path) -> None:
    path = tmp_path / "beat.json"
    assert not check_worker(path, 60).ok and "no heartbeat" in check_worker(path, 60).detail
    beat = Heartbeat(path, worker="w@h", queue="q", embedder=lambda: "fake", serving=lambda: "topics:3")
    beat.beat()
    fresh = check_worker(path, 60)
    assert fresh.ok and "topics:3" in fresh.detail
    stale = check_worker(path, 60, now=json.loads(path.read_text())["at"] + 61)
    assert not stale.ok and "61 s ago" in stale.detail
    Heartbeat(path, worker="w@h", queue="q", embedder=lambda: "fake").beat()  # no model loaded
    assert not check_worker(path, 60).ok
    beat.remove()
    assert not path.exists()


def test_an_unreachable_database_is_one_line_without_its_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once closed
    check = check_database(f"postgresql+psycopg://u:s3cret@127.0.0.1:{port}/x", timeout_s=2)
    assert not check.ok and "s3cret" not in check.line() and "\n" not in check.line()


def test_healthz_follows_the_heartbeat_and_a_taken_port_costs_only_the_metrics(tmp_path: Path) -> None:
    beat = Heartbeat(tmp_path / "beat.json", worker="w", queue="q", embedder=lambda: "fake")
    exporter = start_exporter("127.0.0.1", 0, heartbeat=beat, max_age_s=5)
    assert exporter is not None
    try:
        url = f"http://127.0.0.1:{exporter.port}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/healthz", timeout=5)
        assert refused.value.code == 503  # no beat yet
        beat.beat()
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as reply:
            assert reply.status == 200
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as reply:
            assert b"topicq_posts_received_total" in reply.read()
        assert start_exporter("127.0.0.1", exporter.port, heartbeat=beat, max_age_s=5) is None
    finally:
        exporter.stop()


def test_topicq_health_fails_while_the_worker_cannot_write(tmp_path: Path, sqlite_url: str, monkeypatch) -> None:
    """The verb runs the writes check too: a database that answers SELECT 1 may refuse every write."""
    import json

    from click.testing import CliRunner

    from cli.main import main
    from shared.settings import get_settings

    beat = tmp_path / "beat.json"
    monkeypatch.setenv("HEARTBEAT_FILE", str(beat))
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # its FAIL line is not the one checked
    get_settings.cache_clear()
    Heartbeat(beat, worker="w@h", queue="q", embedder=lambda: "fake", serving=lambda: "topics:1").beat()
    record = json.loads(beat.read_text())
    record["database"] = {"ok": False, "error": "relation \"results\" does not exist", "since": record["at"]}
    beat.write_text(json.dumps(record))

    result = CliRunner().invoke(main, ["health"])

    assert result.exit_code == 1
    assert any(line.startswith("FAIL writes") and "results" in line for line in result.output.splitlines()), \
        result.output
