"""Given a worker on the fake Gemini API, when half its calls get 429 and a tenth 5xx, then every
post is `done` and the API key appears in none of the DEBUG log lines or rows."""

from __future__ import annotations

from testkit.drills import storm


def test_429_storm_every_post_done_and_no_key_in_debug_logs(drill) -> None:
    result = drill(storm.run, storm.StormSize(posts=300))
    extra = result.extra
    assert extra["alive"] and not extra["errors"], result.describe()
    assert extra["outcomes"].get("429", 0) >= 5, result.describe()
    assert result.lost == 0 and result.duplicates == 0, result.describe()
    assert result.statuses == {"done": 300}, result.describe()
    assert extra["leaks"] == 0, result.describe()
    assert result.failures == [], result.describe()
