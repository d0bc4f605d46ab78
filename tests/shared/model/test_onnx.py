"""The onnx encoder: token-budget batches, faithfulness to torch, no torch in its process, its id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.errors import ModelError
from shared.model.embedders import KINDS, kind_for_id, make_embedder
from shared.model.embedders.batching import token_budget_batches
from shared.model.embedders.onnx import OnnxEmbedder
from shared.model.embedders.onnx_export import PROBE_TEXTS, build, mean_cosine, reference_vectors
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


def test_token_budget_batches_cover_every_text_once_within_budget() -> None:
    lengths = [200, 5, 60, 600, 33, 33, 128, 9, 256, 17]
    batches = token_budget_batches(lengths, batch_tokens=256)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= 256  # a text over budget goes alone
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(flat)  # shortest first: neighbours of similar length, little padding
    assert [len(b) for b in batches] == [5, 2, 1, 1, 1]


@pytest.fixture(scope="module")
def int8() -> OnnxEmbedder:
    """The default embedder (built at install, else here on first use: ~1 min)."""
    embedder = OnnxEmbedder("int8")
    embedder.embed(["warm-up"])
    return embedder


@pytest.mark.slow  # loads torch and the MiniLM weights beside the onnx encoder
def test_int8_vectors_are_faithful_to_torch(int8: OnnxEmbedder) -> None:
    """The shipped file against sentence-transformers' own vectors of the packaged model."""
    cosine = mean_cosine(int8.embed(PROBE_TEXTS), reference_vectors(PROBE_TEXTS, 256))
    assert 0.99 <= cosine < 0.99999  # faithful, yet quantised (not torch's vectors under another id)


def test_a_text_gets_the_same_vector_alone_and_among_others(int8: OnnxEmbedder) -> None:
    """Neighbours never move a vector (int8 activations are scaled per run: one post a run)."""
    together = int8.embed(PROBE_TEXTS)
    alone = np.stack([int8.embed([text])[0] for text in PROBE_TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-6)


@pytest.mark.slow  # exports and checks a whole encoder
def test_the_check_refuses_an_export_of_other_weights(tmp_path: Path) -> None:
    """A file built from another model (same architecture, other weights) fails the check and
    is never written where the embedder would load it."""
    from transformers import AutoConfig, AutoModel

    from shared.model.embedders.onnx_export import source_dir

    weights = tmp_path / "other-model"
    config = AutoConfig.from_pretrained(str(source_dir()))
    AutoModel.from_config(config).save_pretrained(str(weights))  # freshly initialised weights
    out = tmp_path / "encoder.onnx"
    with pytest.raises(ModelError, match="not faithful"):
        build(out, quantization="fp32", weights=weights)
    assert not out.exists()


@pytest.mark.slow  # a process of its own loading the encoder
def test_a_worker_process_on_onnx_imports_no_torch(int8: OnnxEmbedder, sqlite_url: str) -> None:
    """The worker's modules, its runtime on the default embedder and a classifier call: no torch."""
    script = (
        "import json, sys\n"
        "from shared.settings import Settings\n"
        "import worker.app, worker.tasks, worker.pipeline\n"
        "from worker.worker_state import worker_embedder\n"
        "from shared.model.threads import settle_classifier_threads\n"
        "settle_classifier_threads(2)\n"
        f"embedder = worker_embedder(Settings(database_url={sqlite_url!r}))\n"
        "vectors = embedder.embed(['a post about the shuttle'])\n"
        "import keras\n"
        "keras.layers.Dense(2)(vectors)\n"
        "print(json.dumps({'id': embedder.id, 'torch': sorted(m for m in sys.modules\n"
        "    if m.split('.')[0] in ('torch', 'sentence_transformers', 'transformers'))}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env={**_env(), "EMBEDDER": "auto"})
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"id": int8.id, "torch": []}


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GEMINI_API_KEY_FILE")}


def test_every_local_kind_is_found_again_from_its_id() -> None:
    settings = Settings(local_model_max_tokens=128)
    for kind in KINDS:
        if kind == "gemini":
            continue
        embedder = make_embedder(kind, settings)  # nothing is loaded before the first embed
        assert kind_for_id(embedder.id) == (kind, None if kind == "fake" else 128)
    assert kind_for_id("local:all-MiniLM-L6-v2:384:256:onnx-int4") is None


class RecordingSession:
    """onnxruntime's session seen from outside: how many runs are under way at once."""

    def __init__(self, inner: object) -> None:
        import threading

        self.inner, self.running, self.most = inner, 0, 0
        self._lock = threading.Lock()

    def run(self, outputs: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import time

        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.002)  # long enough for another batch's thread to start a run if it may
            return self.inner.run(outputs, feeds)  # type: ignore[attr-defined, no-any-return]
        finally:
            with self._lock:
                self.running -= 1


def test_posts_run_side_by_side_one_core_each_never_more_runs_than_threads(int8: OnnxEmbedder) -> None:
    """A run of one post parallelises poorly over cores: two posts at once, one core each, go faster than
    one post at a time on both (bench/results/encoder_lanes.md). Batches embedded from several threads
    share those lanes: never more runs at once than ENCODER_THREADS."""
    from concurrent.futures import ThreadPoolExecutor

    embedder = OnnxEmbedder("int8", threads=2)
    embedder.embed(["warm-up"])
    session = RecordingSession(embedder._session)
    embedder._session = session
    texts = [f"post {i} about the shuttle launch and its orbit" for i in range(12)]
    alone = embedder.embed(texts)
    assert session.most == 2  # one batch already takes both lanes
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(embedder.embed, [texts] * 3))
    assert session.most == 2
    for vectors in [alone, *results]:
        assert np.allclose(vectors, int8.embed(texts), atol=1e-6)
