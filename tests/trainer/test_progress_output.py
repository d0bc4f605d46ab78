"""What `topicq train` writes on stderr: one final line per progress bar, no TensorFlow start-up noise.

Run as a process of its own: TensorFlow logs its start-up lines once per process, on import."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.tables import post_rows, write_table
from testkit.worker_process import clean_environment

ROOT = Path(__file__).resolve().parents[2]
TF_NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard")


@pytest.mark.slow  # `topicq train` in a process of its own: TensorFlow's start-up and a fit
def test_train_prints_each_bar_once_and_no_tensorflow_noise(tmp_path: Path) -> None:
    posts = write_table(tmp_path / "posts.jsonl", post_rows(10))
    env = {k: v for k, v in clean_environment().items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    env.update(TOPICQ_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "train", "--dataset", str(posts), "--id-column", "id",
         "--embedder", "fake", "--hidden", "32", "--epochs", "5"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trained topics version 1" in done.stdout

    # A bar redraws itself with \r; piped to a log every drawing stays, so count the full ones.
    drawings = [part for part in re.split(r"[\r\n]", done.stderr) if part.strip()]
    finished = [part for part in drawings if part.startswith("embedding: 100%")]
    assert len(finished) == 1, drawings
    assert "0 from cache, 30 new" in finished[0]
    assert not [line for line in drawings if any(noise in line for noise in TF_NOISE)], drawings
