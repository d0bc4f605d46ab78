"""TopicClassifier: learns, outputs probabilities, keeps its hyperparameters."""

from __future__ import annotations

import numpy as np
import pytest

from shared.model.classifier import TopicClassifier
from testkit.factories import clusters


@pytest.fixture(scope="module")
def fitted() -> TopicClassifier:
    x, labels = clusters()
    return TopicClassifier(hidden=16, epochs=30, learning_rate=0.01, seed=0).fit(x, labels)


def test_it_learns_separable_classes_and_keeps_their_names(fitted: TopicClassifier) -> None:
    x, labels = clusters(seed=1)  # fresh points from the same blobs
    assert list(fitted.classes_) == ["crypt", "med", "space"]
    assert list(fitted.predict(x)) == labels


def test_probabilities_are_a_softmax(fitted: TopicClassifier) -> None:
    x, _ = clusters(seed=2)
    proba = fitted.predict_proba(x)
    assert proba.shape == (60, 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert fitted.model_.layers[-1].activation.__name__ == "softmax"


def test_no_posts_give_no_rows(fitted: TopicClassifier) -> None:
    assert fitted.predict_proba(np.zeros((0, 8))).shape == (0, 3)
    assert fitted.predict(np.zeros((0, 8))).shape == (0,)


def test_history_records_training_and_validation(fitted: TopicClassifier) -> None:
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(fitted.history_)
    assert 1 <= len(fitted.history_["loss"]) <= 30
    assert fitted.history_["loss"][-1] < fitted.history_["loss"][0]


def test_params_round_trip() -> None:
    clf = TopicClassifier(hidden=7, dropout=0.1, patience=3)
    params = clf.get_params()
    assert params["hidden"] == 7 and params["dropout"] == 0.1 and params["patience"] == 3
    assert TopicClassifier(**params).get_params() == params


def test_too_few_posts_for_a_stratified_validation_split() -> None:
    x, labels = clusters(per_class=2)
    with pytest.raises(ValueError):
        TopicClassifier(epochs=1).fit(x, labels)


@pytest.mark.slow  # fits a two-branch (words) model: over a minute on a busy machine
def test_class_weight_counts_in_a_two_branch_model() -> None:
    """Weighting posts by their class's rarity changes what a two-branch (embedding + words) fit learns."""
    rng = np.random.default_rng(3)
    per_class = {"space": 40, "crypt": 8}  # imbalanced, with overlapping blobs so the weights matter
    x = np.concatenate([rng.normal(i * 0.6, 1.0, (n, 8)) for i, n in enumerate(per_class.values())]).astype(np.float32)
    labels = [label for label, n in per_class.items() for _ in range(n)]
    texts = [f"{label} {'orbit' if rng.random() < 0.5 else 'key'} word{k % 5}" for k, label in enumerate(labels)]

    def fit(class_weight: bool) -> np.ndarray:
        clf = TopicClassifier(hidden=8, epochs=15, patience=15, learning_rate=0.01, seed=0, lexical=50,
                              lexical_join="mean", class_weight=class_weight)
        return clf.fit(x, labels, texts=texts).predict_proba(x, texts)

    plain = fit(False)
    np.testing.assert_allclose(fit(False), plain, atol=1e-5)  # the fit is deterministic
    weighted = fit(True)
    crypt = [i for i, label in enumerate(labels) if label == "crypt"]
    column = ["crypt", "space"].index("crypt")
    assert weighted[crypt, column].mean() > plain[crypt, column].mean() + 0.01
