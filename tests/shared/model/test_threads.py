"""The worker's thread pools: the encoder gets the cores, numpy's BLAS keeps to the calling thread."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_settled_threads_leave_blas_one_thread_in_every_loaded_openblas() -> None:
    # A fresh process: numpy's OpenBLAS starts with a pool of every core; scipy's (the words branch's
    # sparse rows, drift statistics) is loaded after the settling and reads the environment.
    script = (
        "import json, os\n"
        "import numpy as np\n"
        "from shared.model.threads import blas_threads, settle_classifier_threads\n"
        "settle_classifier_threads(4)\n"
        "import scipy.linalg\n"
        "np.ones((64, 64)) @ np.ones((64, 64))\n"
        "print(json.dumps(blas_threads()))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "", "PYTHONPATH": str(ROOT)}
    env.pop("OPENBLAS_NUM_THREADS")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    threads = json.loads(done.stdout.strip().splitlines()[-1])
    assert threads, "no OpenBLAS found loaded"
    assert set(threads.values()) == {1}, threads


def test_an_operator_setting_for_blas_threads_is_kept() -> None:
    script = (
        "import json\n"
        "import numpy as np\n"
        "from shared.model.threads import blas_threads, settle_classifier_threads\n"
        "settle_classifier_threads(4)\n"
        "print(json.dumps(blas_threads()))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(json.loads(done.stdout.strip().splitlines()[-1]).values()) == {2}
