"""A saved version is served in numpy (forward.npz): Keras' probabilities, without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from shared.errors import ModelError
from shared.model.classifier import TopicClassifier
from shared.model.dense_forward import FORWARD_FILE, DenseForward
from shared.model.store import TopicModel, checksum
from testkit.factories import labelled_posts, meta_for

ROOT = Path(__file__).resolve().parents[3]


def posts(seed: int) -> tuple[np.ndarray, list[str], list[str]]:
    from shared.model.embedders.fake import FakeEmbedder
    from shared.model.preprocess import preprocess

    rows = labelled_posts(15, seed=seed)
    texts = [preprocess(text) for _, text, _ in rows]
    return FakeEmbedder().embed(texts), texts, [label for _, _, label in rows]


@cache
def fit(lexical: int, join: str) -> TopicClassifier:
    x, texts, labels = posts(seed=0)
    return TopicClassifier(hidden=16, epochs=8, lexical=lexical, lexical_join=join, seed=0).fit(
        x, labels, texts=texts)


@pytest.fixture(params=[(0, "mean"), (200, "mean"), (200, "product"), (200, "sum")],
                ids=["embedding only", "words, mean", "words, product", "words, sum"])
def fitted(request: pytest.FixtureRequest) -> TopicClassifier:
    return fit(*request.param)


def test_the_numpy_forward_pass_gives_keras_probabilities(fitted: TopicClassifier, tmp_path: Path) -> None:
    sha = TopicModel(meta_for(fitted), fitted).save(tmp_path)
    loaded = TopicModel.load(tmp_path, sha)
    assert isinstance(loaded.classifier.model_, DenseForward)
    x, texts, _ = posts(seed=3)
    texts_or_none = texts if fitted.uses_text else None
    served = loaded.classifier.predict_proba(x, texts_or_none)
    np.testing.assert_allclose(served, fitted.predict_proba(x, texts_or_none), atol=1e-6)
    assert list(loaded.classifier.predict(x, texts_or_none)) == list(fitted.predict(x, texts_or_none))
    np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-6)


def test_two_classes_words_branch_is_served_the_same(tmp_path: Path) -> None:
    x, texts, labels = posts(seed=0)
    two = [i for i, label in enumerate(labels) if label != labels[0]]
    kept_labels = [labels[i] for i in two]
    assert len(set(kept_labels)) == 2
    fitted = TopicClassifier(hidden=16, epochs=8, lexical=200, lexical_join="mean", seed=0).fit(
        x[two], kept_labels, texts=[texts[i] for i in two])
    sha = TopicModel(meta_for(fitted), fitted).save(tmp_path)
    loaded = TopicModel.load(tmp_path, sha)
    x3, texts3, _ = posts(seed=3)
    np.testing.assert_allclose(loaded.classifier.predict_proba(x3, texts3), fitted.predict_proba(x3, texts3),
                               atol=1e-6)
    assert fitted.words_ is not None and fitted.words_["kernel"].shape[1] == 2


def test_a_version_saved_before_forward_npz_is_served_by_keras(fitted: TopicClassifier, tmp_path: Path) -> None:
    TopicModel(meta_for(fitted), fitted).save(tmp_path)
    (tmp_path / FORWARD_FILE).unlink()  # as versions saved before the file existed
    if fitted.words_ is not None:  # a words branch of its own lives in forward.npz alone
        with pytest.raises(ModelError, match=r"words branch \(forward.npz\) is missing"):
            TopicModel.load(tmp_path, checksum(tmp_path))
        return
    loaded = TopicModel.load(tmp_path, checksum(tmp_path))
    assert not isinstance(loaded.classifier.model_, DenseForward)
    x, texts, _ = posts(seed=3)
    texts_or_none = texts if fitted.uses_text else None
    np.testing.assert_array_equal(loaded.classifier.predict_proba(x, texts_or_none),
                                  fitted.predict_proba(x, texts_or_none))


def test_serving_a_version_imports_no_tensorflow(tmp_path: Path) -> None:
    fitted = fit(200, "mean")
    sha = TopicModel(meta_for(fitted), fitted).save(tmp_path)
    x, texts, _ = posts(seed=3)
    script = (
        "import json, sys\n"
        "import numpy as np\n"
        "import worker.app, worker.tasks, worker.pipeline\n"
        "from pathlib import Path\n"
        "from shared.model.store import TopicModel\n"
        "from shared.model.threads import settle_classifier_threads\n"
        "settle_classifier_threads(2)\n"
        f"model = TopicModel.load(Path({str(tmp_path)!r}), {sha!r})\n"
        f"x = np.array({x.tolist()!r}, dtype=np.float32)\n"
        f"texts = {texts if fitted.uses_text else None!r}\n"
        "p = model.classifier.predict_proba(x, texts)\n"
        "print(json.dumps({'rows': len(p), 'loaded': sorted(m for m in sys.modules\n"
        "    if m.split('.')[0] in ('tensorflow', 'keras', 'torch'))}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"rows": len(x), "loaded": []}
