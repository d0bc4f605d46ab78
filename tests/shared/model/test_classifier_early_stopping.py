"""Early stopping: a fit ends when the validation loss stops improving, well before the epoch cap.

Easily separable posts: the loss keeps creeping down by tiny amounts for hundreds
of epochs after every prediction is right, which must not keep a fit going.
"""

from __future__ import annotations

import pytest

from shared.model.classifier import TEMPERATURES, TopicClassifier
from shared.model.embedders.fake import FakeEmbedder
from shared.model.preprocess import preprocess
from testkit.factories import labelled_posts

CAP = 150
WORDS = {"lexical": 1000, "lexical_join": "mean"}  # the default: a words branch beside the Keras one


def fit_on_easy_posts(**params: object) -> tuple[TopicClassifier, float]:
    """Fitted on separable fake posts; returns the classifier and its accuracy on fresh ones."""
    embedder = FakeEmbedder()
    train, fresh = labelled_posts(100, seed=0), labelled_posts(10, seed=1)
    texts = [preprocess(text) for _, text, _ in train]
    classifier = TopicClassifier(hidden=32, epochs=CAP, **params).fit(  # type: ignore[arg-type]
        embedder.embed(texts), [label for *_, label in train], texts=texts)
    fresh_texts = [preprocess(text) for _, text, _ in fresh]
    predicted = classifier.predict(embedder.embed(fresh_texts), fresh_texts)
    accuracy = sum(p == label for p, (*_, label) in zip(predicted, fresh, strict=True)) / len(fresh)
    return classifier, accuracy


def assert_stopped_early(classifier: TopicClassifier) -> None:
    epochs_run = len(classifier.history_["loss"])
    assert epochs_run < CAP / 2
    assert classifier.best_epoch_ == epochs_run - classifier.patience  # no gain worth the name since


@pytest.mark.slow  # a fit to its early stop: over half a minute on a busy machine
def test_an_embedding_only_fit_stops_well_before_the_epoch_cap() -> None:
    classifier, accuracy = fit_on_easy_posts()

    assert_stopped_early(classifier)
    assert accuracy == 1.0


@pytest.mark.slow  # a fit to its early stop, then the words branch's SVMs
def test_a_words_model_stops_its_keras_fit_on_the_validation_loss_well_before_the_epoch_cap() -> None:
    classifier, accuracy = fit_on_easy_posts(**WORDS)

    assert_stopped_early(classifier)
    assert accuracy == 1.0
    loss, best = classifier.history_["val_loss"], classifier.best_epoch_
    assert min(loss[best:]) > loss[best - 1] - classifier.min_delta  # what stopped it
    # The words branch beside it: an SVM whose scores were given a calibrated temperature.
    assert classifier.words_ is not None and classifier.word_temperature_ in TEMPERATURES
    assert classifier.words_["kernel"].shape == (classifier.lexicon_.size, len(classifier.classes_))
