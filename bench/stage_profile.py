"""Where a process's CPU goes, by stage of the message path, from py-spy samples.

`StageProfile` samples running processes with py-spy (its raw, collapsed-stack
output), only the thread holding the interpreter lock (`--gil`: a thread
waiting on a socket, a lock or a sleep releases it, so a sample is CPU spent
running Python; system time in a send or receive is not seen), and sorts
every sample into one stage: the innermost frame on its stack that names a
stage decides (a Redis reply parsed inside an ack counts as the ack). Scaled
by the CPU the processes spent per post, it gives CPU ms per post by stage.

py-spy is a bench tool, not a dependency: `pip install py-spy` to use it.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


def _functions(*names: str) -> str:
    """A frame of a function (or method, "Class.name") called one of `names`."""
    return rf"^(?:\w+\.)?(?:{'|'.join(names)}) \("


def _files(*parts: str) -> str:
    """A frame in a file whose path contains one of `parts`."""
    return rf"\([^()]*(?:{'|'.join(parts)})"


# (stage, pattern on one frame "function (file:line)"). The innermost frame of a sample's stack that
# matches a pattern names its stage (patterns tried in this order within a frame).
WORKER_STAGES: list[tuple[str, str]] = [
    ("metrics (prometheus)", _files("worker/metrics", "prometheus_client/")),
    ("row writes (SQL upsert)", f"{_functions('write_rows')}|{_files('sqlalchemy/', 'psycopg')}"),
    ("embed call (Gemini client, its JSON, cache)",
     _functions("embed_each") + "|" + _files("genai/", "httpx", "httpcore", "h11/", "shared/model/embedders/",
                                              "embedding_cache")),
    ("payload validation", _functions("parse_post", "_validate", "model_validate", "payload_from_call")),
    ("pipeline (preprocess, classify, rows)", _files("worker/pipeline", "shared/model/",
                                                     "shared/improvement/",
                                                     "worker/after_batch", "worker/shadow", "numpy/")),
    ("acks (unacked records removed)", _functions("ack", "acknowledge", "on_return", "_remove_from_indices",
                                                 "ack_many", "ack_log_error")),
    ("task body (tasks.py)", _files("worker/tasks")),
    ("celery-batches flush (pool hand-off)", _functions("_do_flush", "flush", "apply_async", "from_request")),
    ("Celery request building", f"{_functions('task_message_handler', 'on_task_received')}|"
                                f"{_files('celery/worker/request', 'celery/app/trace', 'celery/utils/')}"),
    ("unacked records written (QoS.append, one MULTI a read)", _functions("append", "_record_held")),
    ("envelope check", _files("shared/wire/envelope")),
    ("kombu message decode", f"{_files('kombu/message', 'kombu/serialization', 'kombu/utils/json')}|"
                             f"{_functions('_callback')}"),
    ("Redis read (BLMOVE) and hand-over", _functions("_brpop_read", "_brpop_start", "_deliver_moved",
                                                     "_deliver",
                                                     "_take_more")),
    ("sweep, heartbeat, presence, other threads",
     _files("worker/heartbeat", "worker/presence", "worker/alias_follower", "worker/rejected_posts") + "|"
     + _functions("restore_visible", "renew_held", "restore_inflight", "maybe_restore_messages")),
    ("event loop (kombu hub, Celery timers)", _files("kombu/asynchronous", "celery/worker/loops",
                                                     "kombu/transport", "celery/worker/consumer")),
]

PRODUCER_STAGES: list[tuple[str, str]] = [
    ("validate (Post)", _functions("validate", "parse_post", "model_validate")),
    ("Redis LPUSH (redis-py)", _files("redis/")),
    ("kombu publish (serialize, encode)", _files("kombu/")),
    ("Celery send_task (message building)", _files("celery/")),
]


def py_spy() -> str:
    """The py-spy executable; SystemExit with the install command when it is missing."""
    found = shutil.which("py-spy") or Path(sys.executable).with_name("py-spy")
    if not Path(found).exists():
        raise SystemExit("--profile samples with py-spy, which is not installed: "
                         f"{Path(sys.executable).with_name('pip')} install py-spy")
    return str(found)


class StageProfile:
    """py-spy recording the processes `pids` while in the `with` block; `counts()` afterwards."""

    def __init__(self, pids: list[int], out_dir: Path, name: str, rate: int = 200) -> None:
        self.pids, self.rate = pids, rate
        self.files = [out_dir / f"{name}-{pid}.txt" for pid in pids]
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> StageProfile:
        spy = py_spy()
        for pid, path in zip(self.pids, self.files, strict=True):
            self.procs.append(subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--rate", str(self.rate), "--format", "raw",
                 "--nonblocking", "--gil", "--output", str(path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()

    def stacks(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for path in self.files:
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                stack, _, count = line.rpartition(" ")
                if count.isdigit():
                    found[stack] += int(count)
        return found


def by_stage(stacks: Counter[str], stages: list[tuple[str, str]]) -> Counter[str]:
    """Samples per stage: the innermost frame that matches a stage's pattern names it."""
    compiled = [(name, re.compile(pattern)) for name, pattern in stages]
    out: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        stage = "other"
        for frame in reversed(frames):
            frame = frame.strip()
            match = next((name for name, pattern in compiled if pattern.search(frame)), None)
            if match:
                stage = match
                break
        out[stage] += count
    return out


def stage_table(samples: Counter[str], cpu_ms_per_post: float) -> list[dict[str, float | str]]:
    """Each stage's share of the samples, and its CPU ms per post (the share of `cpu_ms_per_post`)."""
    total = sum(samples.values()) or 1
    return [{"stage": stage, "samples": count, "share": round(count / total, 3),
             "cpu_ms_per_post": round(cpu_ms_per_post * count / total, 3)}
            for stage, count in samples.most_common()]
