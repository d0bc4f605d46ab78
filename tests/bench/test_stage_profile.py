"""The stage profile sorts each sampled stack by its innermost frame that names a stage."""

from __future__ import annotations

from collections import Counter

from bench.stage_profile import PRODUCER_STAGES, WORKER_STAGES, by_stage, stage_table

READ = "MultiChannelPoller.on_readable (kombu/transport/redis.py:1);Channel._brpop_read (shared/wire/transport.py:2)"


def test_the_innermost_stage_frame_decides_and_generic_frames_inherit_it() -> None:
    stacks = Counter({
        # a Redis reply parsed inside the unacked record's MULTI counts as that record
        f"{READ};Channel._deliver_moved (shared/wire/transport.py:3);Channel._record_held (shared/wire/transport.py:4);"
        "Pipeline.execute (redis/client.py:5)": 3,
        f"{READ};Channel._deliver_moved (shared/wire/transport.py:3);Channel._check (shared/wire/transport.py:6);"
        "inspect (shared/wire/envelope.py:7);loads (json/__init__.py:8)": 2,
        "_worker (concurrent/futures/thread.py:1);classify (worker/tasks.py:2);process (worker/pipeline.py:3);"
        "write_rows (shared/database/results.py:4);Session.execute (sqlalchemy/orm/session.py:5)": 4,
        "<module> (somewhere.py:1)": 1,
    })

    stages = by_stage(stacks, WORKER_STAGES)

    assert stages == {"unacked records written (QoS.append, one MULTI a read)": 3, "envelope check": 2, "row writes (SQL upsert)": 4,
                      "other": 1}


def test_a_stage_gets_its_share_of_the_measured_cpu() -> None:
    samples = by_stage(Counter({"send_task (celery/app/base.py:1);publish (kombu/messaging.py:2)": 3,
                                "send_task (celery/app/base.py:1)": 1}), PRODUCER_STAGES)

    table = stage_table(samples, cpu_ms_per_post=0.8)

    assert table == [
        {"stage": "kombu publish (serialize, encode)", "samples": 3, "share": 0.75, "cpu_ms_per_post": 0.6},
        {"stage": "Celery send_task (message building)", "samples": 1, "share": 0.25, "cpu_ms_per_post": 0.2},
    ]
