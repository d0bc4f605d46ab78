"""What `topicq demo` tells: where its posts/s come from, and how to start Redis on a bare machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.demo_steps import DEMO_WORKER_ENV, DemoReport, ensure_redis, throughput_line
from shared.errors import ConfigError
from shared.settings import Settings


def test_the_rate_says_it_was_measured_with_the_embedding_cache_off() -> None:
    assert Settings(**{"cache_embeddings": DEMO_WORKER_ENV["CACHE_EMBEDDINGS"]}).cache_embeddings is False
    result = DemoReport(model="sci:1", posts=120, rows=120, accuracy=0.9, seconds=12.0,
                        posts_per_second=10.0, posts_per_embed_call=8.5, sample=[])
    line = throughput_line(result, processed=120)
    assert line == ("    throughput: 120 posts in 12s = 10.0 posts/s, every post embedded "
                    "(embedding cache off); posts per embed call: 8.5")


def test_no_redis_and_no_redis_server_gives_a_hint_that_works_on_a_bare_machine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server installed
    with pytest.raises(ConfigError) as refused:
        ensure_redis("redis://127.0.0.1:1/0", tmp_path / "redis")
    message = str(refused.value)
    assert "docker compose" not in message
    assert "redis-server --daemonize yes" in message and "REDIS_URL" in message
