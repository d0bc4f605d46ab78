"""The model store: save and load are mirror images; altered files are refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from shared.errors import ModelError
from shared.model.classifier import TopicClassifier
from shared.model.store import META_FILE, MODEL_FILE, TopicModel, read_meta
from testkit.factories import clusters, meta_for


@pytest.fixture(scope="module")
def fitted() -> TopicClassifier:
    x, labels = clusters()
    return TopicClassifier(hidden=16, epochs=5, seed=0).fit(x, labels)


def test_round_trip_gives_identical_predictions(fitted: TopicClassifier, tmp_path: Path) -> None:
    meta = meta_for(fitted)
    sha = TopicModel(meta, fitted).save(tmp_path / "3")

    loaded = TopicModel.load(tmp_path / "3", sha)

    x, _ = clusters(seed=5)
    # ModelAndEmbedder in numpy (forward.npz), fitted in Keras: the same probabilities to float32 rounding.
    np.testing.assert_allclose(loaded.classifier.predict_proba(x), fitted.predict_proba(x), atol=1e-6)
    assert list(loaded.classifier.predict(x)) == list(fitted.predict(x))
    assert loaded.meta == meta and loaded.sha256 == sha and loaded.key == "topics:3"
    assert loaded.classifier.get_params() == fitted.get_params()  # not the class's defaults


def test_the_saved_version_names_what_the_classifier_knows(fitted: TopicClassifier, tmp_path: Path) -> None:
    meta = replace(meta_for(fitted), labels=[], hyperparameters={"self_training": 0.9})
    TopicModel(meta, fitted).save(tmp_path)
    saved = read_meta(tmp_path)
    assert saved.labels == [str(c) for c in fitted.classes_]
    assert saved.hyperparameters == {**fitted.get_params(), "self_training": 0.9}


@pytest.mark.parametrize("name", [META_FILE, MODEL_FILE])
def test_a_changed_file_is_refused(fitted: TopicClassifier, tmp_path: Path, name: str) -> None:
    sha = TopicModel(meta_for(fitted), fitted).save(tmp_path)
    with (tmp_path / name).open("ab") as handle:
        handle.write(b" ")
    with pytest.raises(ModelError, match="changed since registration"):
        TopicModel.load(tmp_path, sha)


def test_a_missing_file_is_refused(fitted: TopicClassifier, tmp_path: Path) -> None:
    sha = TopicModel(meta_for(fitted), fitted).save(tmp_path)
    (tmp_path / MODEL_FILE).unlink()
    with pytest.raises(ModelError, match="model.keras is missing"):
        TopicModel.load(tmp_path, sha)


def test_metadata_is_plain_json(fitted: TopicClassifier, tmp_path: Path) -> None:
    meta = meta_for(fitted)
    TopicModel(meta, fitted).save(tmp_path)
    assert read_meta(tmp_path) == meta
    (tmp_path / META_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        read_meta(tmp_path)


def test_the_domain_reference_is_saved_checked_and_optional(fitted: TopicClassifier, tmp_path: Path) -> None:
    from shared.model.out_of_domain import DOMAIN_FILE, calibrate

    x, labels = clusters()
    sha = TopicModel(meta_for(fitted), fitted, domain=calibrate(x, labels)).save(tmp_path / "with")
    loaded = TopicModel.load(tmp_path / "with", sha)
    assert loaded.domain is not None and loaded.domain.labels == sorted(set(labels))
    far = np.full((1, x.shape[1]), -3.0, dtype=np.float32)
    assert list(loaded.domain.out_of_domain(np.concatenate([x[:1], far]))) == [False, True]
    with (tmp_path / "with" / DOMAIN_FILE).open("ab") as handle:
        handle.write(b" ")
    with pytest.raises(ModelError, match="changed since registration"):
        TopicModel.load(tmp_path / "with", sha)
    # A version saved without one loads, with no out-of-domain flag.
    plain = TopicModel(meta_for(fitted), fitted).save(tmp_path / "without")
    assert TopicModel.load(tmp_path / "without", plain).domain is None


def test_the_review_calibration_is_saved_checked_and_gives_the_same_flags(fitted: TopicClassifier,
                                                                          tmp_path: Path) -> None:
    from shared.model.review_calibration import REVIEW_FILE, calibrate_review, class_indices

    x, labels = clusters()
    probabilities = fitted.predict_proba(x)
    review = calibrate_review(x, probabilities, x, held_out="the clusters",
                              train_classes=class_indices(fitted.classes_, labels))
    sha = TopicModel(meta_for(fitted), fitted, review=review).save(tmp_path / "with")
    loaded = TopicModel.load(tmp_path / "with", sha)
    assert loaded.review is not None
    for rate in (0.05, 0.2):
        saved_flags = [flags.tolist() for flags in loaded.review.flags(probabilities, x, rate)]
        assert saved_flags == [flags.tolist() for flags in review.flags(probabilities, x, rate)]
    with (tmp_path / "with" / REVIEW_FILE).open("ab") as handle:
        handle.write(b" ")
    with pytest.raises(ModelError, match="changed since registration"):
        TopicModel.load(tmp_path / "with", sha)
    plain = TopicModel(meta_for(fitted), fitted).save(tmp_path / "without")
    assert TopicModel.load(tmp_path / "without", plain).review is None
