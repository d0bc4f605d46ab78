"""Builders for test data: labelled posts and registered models on the fake embedder."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from shared.improvement.drift_reference import compute_reference, save_reference
from shared.improvement.drift_sums import BatchSums
from shared.model import registry
from shared.model.classifier import TopicClassifier
from shared.model.embedders.base import Embedder
from shared.model.embedders.fake import FakeEmbedder
from shared.model.preprocess import PREPROCESS_VERSION, preprocess
from shared.model.review_calibration import calibrate_review, class_indices
from shared.model.store import ModelMeta, TopicModel

# Each topic has its own vocabulary, so the fake (bag-of-words) embedder separates them.
TOPICS = {
    "space": "orbit rocket launch nasa shuttle moon planet satellite astronaut telescope",
    "medicine": "doctor patient disease treatment symptoms drug clinical therapy diagnosis cancer",
    "crypto": "encryption key cipher algorithm secure privacy clipper chip nsa escrow",
}


# Words of no topic, for posts that read more like prose (benchmarks).
FILLER = "the a of and to in is that it for on with as was at by this be have from or".split()


def make_post(topic: str, rng: random.Random, words: int = 12, filler: float = 0.0) -> str:
    """`words` words of the topic's vocabulary; with `filler`, that share of them from FILLER instead."""
    vocabulary = TOPICS[topic].split()

    def word() -> str:
        if filler and rng.random() < filler:
            return rng.choice(FILLER)
        return rng.choice(vocabulary)

    return "Subject: " + " ".join(word() for _ in range(words))


def make_posts(n: int, prefix: str, seed: int = 0, *, words: int = 12,
               filler: float = 0.0) -> list[dict[str, object]]:
    """Posts `{prefix}-0` ... with their topic as metadata `truth`, the topics taken in turn."""
    rng = random.Random(seed)
    topics = sorted(TOPICS)
    return [{"id": f"{prefix}-{i}", "text": make_post(topics[i % len(topics)], rng, words, filler),
             "metadata": {"truth": topics[i % len(topics)]}} for i in range(n)]


def labelled_posts(per_topic: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(id, text, label) triples."""
    rng = random.Random(seed)
    return [(f"{topic}-{seed}-{i}", make_post(topic, rng), topic)
            for topic in TOPICS for i in range(per_topic)]


# Fitting is most of what a test that needs a model spends: the same vectors, labels and seed
# make the same model, so each is fitted once per process.
_fitted: dict[tuple[object, ...], TopicClassifier] = {}


def _fit(vectors: np.ndarray, labels: list[str], texts: list[str], *, seed: int,
         lexical: int) -> TopicClassifier:
    key = (hashlib.sha256(vectors.tobytes()).hexdigest(), vectors.shape, tuple(labels), seed, lexical)
    if key not in _fitted:
        _fitted[key] = TopicClassifier(hidden=32, epochs=40, patience=5, seed=seed, lexical=lexical).fit(
            vectors, labels, texts=texts)
    return _fitted[key]


def register_fake_model(db_url: str, model_dir: Path, *, name: str = "topics", promote: bool = True,
                        seed: int = 0, embedder: Embedder | None = None, lexical: int = 0,
                        reference: bool = True) -> int:
    """Train a small classifier on `embedder`'s vectors (default the fake embedder; with `lexical`, also on
    the words), store it with its drift reference (unless not `reference`), register it (and promote it)."""
    embedder = embedder or FakeEmbedder()
    posts = labelled_posts(30, seed=seed)
    texts = [text for _, text, _ in posts]  # as sent: the words branch reads them so
    vectors = embedder.embed([preprocess(text) for text in texts])
    clf = _fit(vectors, [p[2] for p in posts], texts, seed=seed, lexical=lexical)
    meta = ModelMeta(name=name, version=0, labels=[str(c) for c in clf.classes_],
                     embedder_id=embedder.id, embedder_dim=embedder.dim,
                     preprocess_version=PREPROCESS_VERSION, data_fingerprint=f"test-{seed}",
                     created_at=datetime.now(UTC).isoformat())
    # Held-out posts of the same topics: what training calibrates the review flag and the drift
    # reference on (its test split).
    held_out = [text for _, text, _ in labelled_posts(10, seed=seed + 1000)]
    held_vectors = embedder.embed([preprocess(text) for text in held_out])
    held_probabilities = clf.predict_proba(held_vectors, held_out)
    review = calibrate_review(vectors, held_probabilities, held_vectors, held_out=f"{len(held_out)} posts",
                              train_classes=class_indices(clf.classes_, [p[2] for p in posts]))
    model = TopicModel(meta, clf, review=review)

    def drift_reference(directory: Path) -> None:
        save_reference(directory, compute_reference(held_probabilities, [str(c) for c in clf.classes_],
                                                    held_vectors))

    version, _ = registry.publish_version(db_url, model_dir, model,
                                          promote_to=registry.DEFAULT_ALIAS if promote else None,
                                          beside=drift_reference if reference else None)
    return version


def clusters(per_class: int = 20, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Three well-separated blobs of vectors, labelled in non-alphabetical order."""
    rng = np.random.default_rng(seed)
    centers = np.eye(3, dim, dtype=np.float32) * 3
    x = np.concatenate([c + rng.normal(0, 0.3, (per_class, dim)) for c in centers]).astype(np.float32)
    return x, ["space"] * per_class + ["crypt"] * per_class + ["med"] * per_class


def meta_for(clf: TopicClassifier) -> ModelMeta:
    """Metadata for storing `clf` as version 3 of `topics` on an 8-dimensional fake embedder."""
    return ModelMeta(name="topics", version=3, labels=[str(c) for c in clf.classes_],
                     embedder_id="fake:bow:8", embedder_dim=8, preprocess_version=1,
                     data_fingerprint="f" * 64, created_at="2026-01-01T00:00:00+00:00",
                     hyperparameters=clf.get_params(), metrics={"accuracy": 1.0},
                     dataset={"train": {"size": 60}})


def sums_of(db_url: str, texts: list[str], version: int) -> BatchSums:
    """The drift sums a worker would add for `texts` classified by `topics` version `version`."""
    model = registry.load(db_url, name="topics", version=version)
    vectors = FakeEmbedder().embed(texts)
    probabilities = model.classifier.predict_proba(vectors, texts)
    labels = [str(c) for c in model.classifier.classes_]
    return BatchSums.of([labels[i] for i in probabilities.argmax(axis=1)],
                        list(probabilities.max(axis=1)), vectors)
