"""Keras (and TensorFlow under it) imported without TensorFlow's start-up log lines.

TF_CPP_MIN_LOG_LEVEL=2 (set unless the user set it) hides most of them, but TensorFlow 2.21
logs "oneDNN custom operations are on" through absl before absl is initialised, at any level.
TF_ENABLE_ONEDNN_OPTS=0 would hide it too, but it turns those operations off: other round-off
and more CPU per epoch. So while TensorFlow loads, stderr (file descriptor 2) goes through a
pipe that drops these start-up lines and passes every other line on.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STARTUP_NOISE = (b"All log messages before absl::InitializeLog() is called",
                 b"oneDNN custom operations are on")


def import_keras() -> Any:
    """`import keras`, the first time with TensorFlow's start-up lines left out of stderr."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        with _startup_noise_dropped():
            import tensorflow  # noqa: F401
    import keras

    return keras


@contextmanager
def _startup_noise_dropped() -> Iterator[None]:
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to filter
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not any(noise in line for noise in STARTUP_NOISE):
                    os.write(saved, line)

    thread = threading.Thread(target=forward, name="tensorflow-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the thread reads to its end
        thread.join(timeout=5)
        if not thread.is_alive():
            os.close(saved)
