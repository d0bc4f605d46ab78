"""Thread pools of a worker process: the encoder gets the cores, nothing spins against it.

A worker runs the encoder (onnxruntime, or torch) and then the classifier
(numpy, or TensorFlow for versions saved before forward.npz) on one thread per
batch. Each library would size its pools to every core and keep idle threads
spinning for a while after its work, so the encoder's threads would share the
cores with spinning ones. Here TensorFlow, when it runs at all, gets one
inter-op thread (a small dense model has no parallel branches worth a pool)
and the intra-op threads of the cores; onnxruntime's threads sleep instead of
spinning (shared/model/embedders/onnx.py).
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)


def settle_classifier_threads(cores: int) -> None:
    """TensorFlow's pools for serving, set before it runs its first op (else they stay as they are).

    Versions with forward.npz are served without TensorFlow (shared/model/dense_forward.py): then it is
    never imported, and only its environment variables wait for an older version's Keras model."""
    # libgomp threads (torch, when EMBEDDER=local) yield their core at once instead of spinning.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
