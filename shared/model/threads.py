"""Thread pools of a worker process: the encoder gets the cores, nothing spins against it.

A worker runs the encoder (onnxruntime, or torch) and then the classifier
(numpy, or TensorFlow for versions saved before forward.npz) on one thread per
batch. Each library would size its pools to every core and keep idle threads
spinning for a while after its work, so the encoder's threads would share the
cores with spinning ones. Here TensorFlow, when it runs at all, gets one
inter-op thread (a small dense model has no parallel branches worth a pool)
and the intra-op threads of the cores; onnxruntime's threads sleep instead of
spinning (shared/model/embedders/onnx.py). numpy's and scipy's OpenBLAS keep
to the calling thread: the classifier's products are far too small to gain from
a pool, and OpenBLAS's pool thread busy-waits after each product, on the cores
the encoder's next run needs (it took about 3 % of a worker's CPU).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def settle_classifier_threads(cores: int) -> None:
    """TensorFlow's pools for serving, set before it runs its first op (else they stay as they are).

    Versions with forward.npz are served without TensorFlow (shared/model/dense_forward.py): then it is
    never imported, and only its environment variables wait for an older version's Keras model."""
    # libgomp threads (torch, when EMBEDDER=local) yield their core at once instead of spinning.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    settle_blas_threads()
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(cores))
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(cores)
    except RuntimeError:  # TensorFlow already running (e.g. tests in one process): keep its pools
        log.debug("TensorFlow already initialised; its thread pools stay as they are")


# The setter and getter of each OpenBLAS build: stock, numpy's (64-bit ints), scipy's.
_BLAS_SYMBOLS = (("openblas_set_num_threads", "openblas_get_num_threads"),
                 ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                 ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"))


def settle_blas_threads() -> None:
    """Every OpenBLAS loaded now to OPENBLAS_NUM_THREADS (default 1); one loaded later reads the variable."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        wanted = max(1, int(os.environ["OPENBLAS_NUM_THREADS"]))
    except ValueError:
        wanted = 1
    for library in _loaded_openblas():
        setter = _symbol(library, 0)
        if setter is not None:
            setter(wanted)


def blas_threads() -> dict[str, int]:
    """Threads of each OpenBLAS loaded in this process (its file -> count)."""
    counts = {}
    for library in _loaded_openblas():
        getter = _symbol(library, 1)
        if getter is not None:
            counts[library._name] = int(getter())
    return counts


def _symbol(library: ctypes.CDLL, which: int) -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    for names in _BLAS_SYMBOLS:
        function = getattr(library, names[which], None)
        if function is not None:
            return function
    return None


def _loaded_openblas() -> list[ctypes.CDLL]:
    """The OpenBLAS libraries mapped into this process (Linux; elsewhere none are settled)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = sorted({line.split(None, 5)[-1] for line in maps.splitlines()
                    if "openblas" in line.rsplit("/", 1)[-1] and ".so" in line})
    libraries = []
    for path in paths:
        try:
            libraries.append(ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY))
        except OSError:
            log.debug("cannot open %s to settle its threads", path)
    return libraries
