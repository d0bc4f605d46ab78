"""Given a backfill in progress, when its worker is SIGKILLed and restarted, then nothing is lost."""

from __future__ import annotations

from tests.drills import kill


def test_sigkill_during_backfill_loses_nothing(drill) -> None:
    result = drill(kill.run, kill.KillSize(posts=600, kills=3))
    assert result.faults == "3 SIGKILLs"
    assert result.lost == 0 and result.duplicates == 0
    assert result.statuses == {"done": 600}
    assert "sent 0 " in result.notes[1]  # resumable: the second backfill had nothing to send
    assert not [n for n in result.notes if n.startswith("log:")]
